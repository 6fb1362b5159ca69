// Microsoft's templating engine as an oracle for tests/cards/test_differential.py and bench/bench_cards.py.
// Input (stdin, or the file named by the first argument): a JSON array of {template, data, host?}.
// Output (stdout): a JSON array, one {result} or {error} per case, in order.
// Modules resolve from <repo>/.oracles/node_modules (installed by ./run test), unless NODE_PATH says otherwise.
'use strict';
const fs = require('fs');
const path = require('path');

function load(name) {
  const roots = [path.resolve(__dirname, '..', '..', '.oracles', 'node_modules')];
  if (process.env.NODE_PATH) roots.unshift(...process.env.NODE_PATH.split(path.delimiter));
  for (const root of roots) {
    try { return require(require.resolve(name, { paths: [root] })); } catch (e) { /* try the next root */ }
  }
  return require(name);
}

const ACData = load('adaptivecards-templating');

function expandOne(c) {
  try {
    const context = { $root: c.data };
    if (c.host !== undefined) context.$host = c.host;
    const result = new ACData.Template(c.template).expand(context);
    // undefined cannot cross JSON: mark it so the caller can tell it from null
    return result === undefined ? { undefined: true } : { result };
  } catch (e) {
    return { error: String(e && e.message !== undefined ? e.message : e) };
  }
}

function rate(seconds, once) {
  let n = 0;
  const start = process.hrtime.bigint();
  const limit = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < limit) {
    once();
    n += 1;
    elapsed = process.hrtime.bigint() - start;
  }
  return n / (Number(elapsed) / 1e9);
}

function bench(c, seconds) {
  const context = { $root: c.data };
  // fresh: a Template per card, as a service does when it loads the template per event
  const fresh = rate(seconds, () => new ACData.Template(c.template).expand(context));
  // reused: one Template expanded again and again (Microsoft's best case)
  const template = new ACData.Template(c.template);
  const reused = rate(seconds, () => template.expand(context));
  return { fresh, reused };
}

const input = fs.readFileSync(process.argv[2] && process.argv[2] !== '--bench' ? process.argv[2] : 0, 'utf8');
const cases = JSON.parse(input);
if (process.argv.includes('--bench')) {
  const seconds = Number(process.env.BENCH_SECONDS || '3');
  process.stdout.write(JSON.stringify(cases.map((c) => bench(c, seconds))));
} else {
  process.stdout.write(JSON.stringify(cases.map(expandOne)));
}
