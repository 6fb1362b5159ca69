// The sandbox's Teams page: teams → channels → threads, cards drawn by Microsoft's Adaptive Cards renderer
// (served from /renderer/ when the stand-in was given a renderer_dir; plain JSON otherwise). Polls
// /_sandbox/teams/state every second; a card button click goes to /_sandbox/teams/ui/submit, which sends the bot
// a signed activity as the "viewing as" user.
(function () {
  "use strict";
  const params = new URLSearchParams(location.search);
  let viewer = params.get("viewer");
  let selected = params.get("channel");
  let state = null;
  let lastSig = "";
  let renderer;            // undefined: not loaded yet; false: unavailable; object: ready
  const cardCache = new Map();   // viewer|message|card JSON -> rendered element (keeps typed input values)

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const initials = (name) => String(name || "?").split(/\s+/).map((w) => w[0] || "").join("").slice(0, 2).toUpperCase();
  const mentionize = (html) => html.replace(/&lt;at&gt;([\s\S]*?)&lt;\/at&gt;/g, '<span class="mention">$1</span>');

  function toast(text, isError) {
    const t = $("toast");
    t.textContent = text;
    t.className = "toast" + (isError ? " error" : "");
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src; s.onload = resolve; s.onerror = () => reject(new Error("cannot load " + src));
      document.head.appendChild(s);
    });
  }

  async function loadRenderer(info) {
    if (!info || !info.available) return false;
    try {
      if (info.css) {
        const l = document.createElement("link");
        l.rel = "stylesheet"; l.href = info.css; document.head.appendChild(l);
      }
      if (info.markdown) await loadScript(info.markdown);
      await loadScript(info.script);
      const AC = window.AdaptiveCards;
      if (!AC) return false;
      if (window.markdownit) {
        const md = window.markdownit();
        AC.AdaptiveCard.onProcessMarkdown = (text, result) => { result.outputHtml = md.render(text); result.didProcess = true; };
      }
      let hostConfig = null;
      if (info.hostConfig) hostConfig = new AC.HostConfig(await (await fetch(info.hostConfig)).json());
      return { AC, hostConfig };
    } catch (err) {
      console.error(err);
      return false;
    }
  }

  // "<at>Name</at>" in rendered text → a highlighted mention, as Teams shows it.
  function highlightMentions(root) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const hits = [];
    while (walker.nextNode()) if (walker.currentNode.nodeValue.includes("<at>")) hits.push(walker.currentNode);
    for (const node of hits) {
      const span = document.createElement("span");
      span.innerHTML = mentionize(esc(node.nodeValue));
      node.replaceWith(...span.childNodes);
    }
  }

  function jsonView(card, err) {
    const pre = document.createElement("pre");
    pre.className = "card-json";
    pre.innerHTML = mentionize(esc((err ? "Renderer error: " + err + "\n" : "") + JSON.stringify(card, null, 2)));
    return pre;
  }

  function renderCard(card, ctx) {
    const key = [viewer, ctx.messageId, JSON.stringify(card)].join("|");
    if (cardCache.has(key)) return cardCache.get(key);
    const box = document.createElement("div");
    box.className = "card";
    box.dataset.messageId = ctx.messageId;
    if (!renderer) {
      box.appendChild(jsonView(card));
    } else {
      try {
        const ac = new renderer.AC.AdaptiveCard();
        if (renderer.hostConfig) ac.hostConfig = renderer.hostConfig;
        ac.onExecuteAction = (action) => onAction(action, ctx);
        ac.parse(card);
        const el = ac.render();
        highlightMentions(el);
        box.appendChild(el);
      } catch (err) {
        box.appendChild(jsonView(card, err));
      }
    }
    cardCache.set(key, box);
    return box;
  }

  async function onAction(action, ctx) {
    const type = action.getJsonTypeName();
    if (type === "Action.OpenUrl") {
      if (openTeamsLink(action.url)) return;
      window.open(action.url, "_blank", "noopener");
      return;
    }
    if (type !== "Action.Submit" && type !== "Action.Execute") { toast(type + " is not simulated here"); return; }
    const payload = { viewer, conversation: ctx.conversation, messageId: ctx.messageId,
                      action: { type, id: action.id, verb: action.verb, data: action.data } };
    try {
      const r = await fetch("/_sandbox/teams/ui/submit", { method: "POST", headers: { "Content-Type": "application/json" },
                                                           body: JSON.stringify(payload) });
      const out = await r.json();
      if (!r.ok) { toast(out.error || ("HTTP " + r.status), true); return; }
      const who = nameOf(viewer);
      let text = type + " sent as " + who + ": bot answered " + (out.status == null ? "nothing (unreachable)" : out.status);
      if (out.body && out.body.type === "application/vnd.microsoft.activity.message") text += " — " + out.body.value;
      if (out.replaced) text += " (card replaced for " + who + ")";
      toast(text, !(out.status >= 200 && out.status < 300));
      poll(true);
    } catch (err) {
      toast(String(err), true);
    }
  }

  // A Teams deep link to a channel message (https://teams.microsoft.com/l/message/<channelId>/<messageId>?...)
  // opens that channel here, as Teams would, instead of leaving the sandbox.
  function openTeamsLink(url) {
    let u;
    try { u = new URL(url); } catch (err) { return false; }
    const parts = u.pathname.split("/");
    if (u.hostname !== "teams.microsoft.com" || parts[1] !== "l" || parts[2] !== "message") return false;
    const channelId = decodeURIComponent(parts[3] || "");
    const found = allChannels().find((x) => x.channel.id === channelId);
    const chat = state.chats.find((c) => c.id === channelId);
    if (!found && !chat) { toast("That message is not in this sandbox", true); return true; }
    selected = found ? found.channel.id : "chat:" + chat.id;
    syncUrl(); lastSig = ""; render();
    const root = u.searchParams.get("parentMessageId") || decodeURIComponent(parts[4] || "");
    const el = document.querySelector(`[data-thread-id$="messageid=${CSS.escape(root)}"]`);
    if (el) el.scrollIntoView({ block: "start" });
    return true;
  }

  async function say(text) {
    try {
      const r = await fetch("/_sandbox/teams/ui/say", { method: "POST", headers: { "Content-Type": "application/json" },
                                                        body: JSON.stringify({ viewer, text }) });
      const out = await r.json();
      if (!r.ok) { toast(out.error || ("HTTP " + r.status), true); return false; }
      if (!(out.status >= 200 && out.status < 300)) toast("The bot answered " + out.status, true);
      poll(true);
      return true;
    } catch (err) {
      toast(String(err), true);
      return false;
    }
  }

  $("compose").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("compose-text");
    const text = input.value.trim();
    if (text && await say(text)) input.value = "";
  });

  function nameOf(id) {
    if (id === "bot") return state.bot.name;
    const p = state.people.find((x) => x.id === id);
    return p ? p.name : id;
  }

  function allChannels() {
    const out = [];
    for (const t of state.teams) for (const c of t.channels) out.push({ team: t, channel: c });
    return out;
  }

  function defaultSelection() {
    let best = null, bestTime = -Infinity;
    for (const { channel } of allChannels()) {
      for (const th of channel.threads) for (const m of th.messages) {
        if (m.created > bestTime) { bestTime = m.created; best = channel.id; }
      }
    }
    for (const chat of state.chats) for (const m of chat.messages) {
      if (m.created > bestTime) { bestTime = m.created; best = "chat:" + chat.id; }
    }
    if (best) return best;
    const first = allChannels().find((x) => x.team.installed) || allChannels()[0];
    return first ? first.channel.id : null;
  }

  function renderViewerPicker() {
    const sel = $("viewer");
    if (sel.options.length === state.people.length) return;
    sel.innerHTML = state.people.map((p) => `<option value="${esc(p.id)}">${esc(p.name)}</option>`).join("");
    if (!viewer || !state.people.some((p) => p.id === viewer)) viewer = state.people[0].id;
    sel.value = viewer;
    sel.onchange = () => { viewer = sel.value; syncUrl(); lastSig = ""; render(); };
  }

  function syncUrl() {
    const q = new URLSearchParams(location.search);
    if (viewer) q.set("viewer", viewer);
    if (selected) q.set("channel", selected);
    history.replaceState(null, "", "?" + q.toString());
  }

  function renderRail() {
    const parts = ["<h3>Teams</h3>"];
    for (const t of state.teams) {
      parts.push(`<div class="team"><div class="team-name"><span class="team-avatar">${esc(initials(t.name))}</span>` +
                 `<span>${esc(t.name)}</span><span class="badge ${t.installed ? "on" : ""}" title="app installed?">` +
                 `${t.installed ? "app" : "no app"}</span></div>`);
      for (const c of t.channels) {
        const n = c.threads.length;
        parts.push(`<a class="chan ${c.id === selected ? "active" : ""}" data-id="${esc(c.id)}">${esc(c.name)}` +
                   `${n ? `<span class="count">${n}</span>` : ""}</a>`);
      }
      parts.push("</div>");
    }
    parts.push("<h3>Chats with the bot</h3>");
    if (!state.chats.length) parts.push('<div class="chan muted">none (app not installed for anyone)</div>');
    for (const chat of state.chats) {
      const id = "chat:" + chat.id;
      parts.push(`<a class="chan ${id === selected ? "active" : ""}" data-id="${esc(id)}">${esc(nameOf(chat.user))}` +
                 `<span class="count">${chat.messages.length || ""}</span></a>`);
    }
    const rail = $("rail");
    rail.innerHTML = parts.join("");
    rail.querySelectorAll("a.chan[data-id]").forEach((a) => {
      a.onclick = () => { selected = a.dataset.id; syncUrl(); lastSig = ""; render(); };
    });
  }

  function messageEl(m, conversation, isReply) {
    const div = document.createElement("div");
    div.className = "msg" + (isReply ? " reply" : "");
    div.dataset.messageId = m.id;
    const who = nameOf(m.sender);
    const tags = [];
    if (m.sender === "bot") tags.push('<span class="tag">APP</span>');
    if (m.edited) tags.push(`<span class="tag edited" title="updated ${m.versions - 1}×">Edited</span>`);
    const personal = (state.viewerCards[viewer] || {})[m.id];
    if (personal) tags.push('<span class="tag personal" title="Action.Execute response, only you see it">Only you</span>');
    div.innerHTML = `<div class="avatar ${m.sender === "bot" ? "bot" : ""}">${esc(initials(who))}</div>` +
                    `<div class="body"><div class="meta"><span class="who">${esc(who)}</span>${tags.join("")}` +
                    `<span class="muted" title="message id">#${esc(m.id)}</span></div></div>`;
    const body = div.querySelector(".body");
    if (m.text) {
      const t = document.createElement("div");
      t.className = "text";
      t.innerHTML = mentionize(esc(m.text));
      body.appendChild(t);
    }
    const cards = personal ? [personal] : m.cards;
    for (const card of cards) body.appendChild(renderCard(card, { conversation, messageId: m.id }));
    // Universal Actions sign-in on this card, as the viewer saw it (silent SSO, or the footer's Sign-In button)
    const signin = (state.signins || []).filter((s) => s.user === viewer && s.message_id === m.id).pop();
    if (signin) {
      const t = document.createElement("div");
      t.className = "text muted signin";
      t.textContent = signin.how === "silent" ? "🔑 Signed in silently (single sign-on) to complete your action"
        : signin.how === "button" ? `🔑 ${signin.text || "Sign in"} — [Sign-In]`
        : `🔑 sign-in ${signin.how}${signin.problem ? ": " + signin.problem : ""}`;
      body.appendChild(t);
    }
    if (!m.text && !cards.length && m.value) {
      const t = document.createElement("div");
      t.className = "text muted";
      t.textContent = "submitted " + JSON.stringify(m.value);
      body.appendChild(t);
    }
    return div;
  }

  function renderMain() {
    const header = $("channel-header");
    const box = $("threads");
    box.innerHTML = "";
    const compose = $("compose");
    compose.hidden = true;
    if (selected && selected.startsWith("chat:")) {
      const chat = state.chats.find((c) => "chat:" + c.id === selected);
      header.textContent = chat ? `Chat: ${state.bot.name} ↔ ${nameOf(chat.user)}` : "Chat";
      // only the chat's own user types in it (Teams shows nobody else this chat)
      compose.hidden = !chat || chat.user !== viewer;
      if (!chat || !chat.messages.length) { box.innerHTML = '<p class="empty">No messages yet.</p>'; return; }
      const th = document.createElement("div");
      th.className = "thread";
      chat.messages.forEach((m) => th.appendChild(messageEl(m, chat.id, false)));
      box.appendChild(th);
      return;
    }
    const found = allChannels().find((x) => x.channel.id === selected);
    if (!found) { header.textContent = ""; box.innerHTML = '<p class="empty">Pick a channel.</p>'; return; }
    header.innerHTML = `${esc(found.team.name)} <span class="muted">›</span> ${esc(found.channel.name)}` +
                       (found.team.installed ? "" : ' <span class="badge">app not installed</span>');
    if (!found.channel.threads.length) { box.innerHTML = '<p class="empty">No posts in this channel yet.</p>'; return; }
    for (const t of found.channel.threads) {
      const th = document.createElement("div");
      th.className = "thread";
      th.dataset.threadId = t.id;
      t.messages.forEach((m, i) => th.appendChild(messageEl(m, t.id, i > 0)));
      if (t.messages.length && t.messages[0].cards.length) th.appendChild(replyBox(t.id));
      box.appendChild(th);
    }
  }

  // A reply box under each card's thread: the viewer's typed reply goes to Graph subscriptions (and to the bot when
  // the app has the RSC permission), as in Teams. Drafts survive the page's re-render on every state change.
  const drafts = {};
  function replyBox(threadId) {
    const form = document.createElement("form");
    form.className = "compose reply";
    const input = document.createElement("input");
    input.type = "text";
    input.maxLength = 2000;
    input.placeholder = "Reply (e.g. approve, or reject: reason)";
    input.value = drafts[threadId] || "";
    input.addEventListener("input", () => { drafts[threadId] = input.value; });
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = "Reply";
    form.append(input, button);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      try {
        const r = await fetch("/_sandbox/teams/ui/reply", { method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ viewer, conversation: threadId, text }) });
        const out = await r.json();
        if (!r.ok) { toast(out.error || ("HTTP " + r.status), true); return; }
        drafts[threadId] = "";
        input.value = "";
        poll(true);
      } catch (err) {
        toast(String(err), true);
      }
    });
    return form;
  }

  function render() {
    if (!state) return;
    renderViewerPicker();
    if (!selected) { selected = defaultSelection(); syncUrl(); }
    const box = $("threads");
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 40;
    renderRail();
    renderMain();
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  async function poll(once) {
    try {
      const r = await fetch("/_sandbox/teams/state", { cache: "no-store" });
      const text = await r.text();
      const next = JSON.parse(text);
      if (renderer === undefined) renderer = await loadRenderer(next.renderer);
      if (text !== lastSig) { lastSig = text; state = next; render(); }
    } catch (err) {
      console.error(err);
    }
    if (!once) setTimeout(poll, 1000);
  }

  poll();
})();
