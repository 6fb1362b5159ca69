"""The Dockerfile, read and replayed without Docker (no daemon on our machines).

`parse()` reads the instructions (continuations, comments, the `# syntax=` directive, JSON or shell forms).
`replay()` carries out a build on the local machine the way Docker would, with every absolute path of the image
moved under a temporary root: COPY copies from the repository (the build context) or an earlier stage, ENV and
WORKDIR accumulate, and each RUN runs as written with `/bin/sh -c` in a fresh virtual environment whose `bin/`
comes first on PATH (the image's `pip`/`python` are its). Only RUNs that create the OS user are not run (they
need root and would change this machine); the tests check them as text. A cache mount keeps its meaning: pip's
cache, here the caller's, so the test downloads what it must only once per machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import venv
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Instruction:
    op: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest, continuations joined
    flags: dict[str, str] = field(default_factory=dict)  # --from=build, --mount=..., --interval=...

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's list, or None for the shell form."""
        text = self.args.strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
            return value
        return None

    def words(self) -> list[str]:
        form = self.exec_form()
        return form if form is not None else shlex.split(self.args)


def parse(text: str) -> list[Instruction]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):  # comments inside a continued instruction are dropped
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    out = []
    for line in lines:
        op, _, rest = line.partition(" ")
        flags: dict[str, str] = {}
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        out.append(Instruction(op.upper(), rest, flags))
    return out


def load() -> list[Instruction]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def stages(instructions: list[Instruction]) -> list[tuple[str, list[Instruction]]]:
    """[(stage name or its index, its instructions after FROM)]."""
    result: list[tuple[str, list[Instruction]]] = []
    for ins in instructions:
        if ins.op == "FROM":
            words = ins.args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(result))
            result.append((name, []))
        else:
            assert result, f"{ins.op} before FROM"
            result[-1][1].append(ins)
    return result


def env_pairs(ins: Instruction) -> dict[str, str]:
    """ENV k=v k2=v2 (or the legacy `ENV k v`)."""
    words = shlex.split(ins.args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def is_user_setup(command: str) -> bool:
    return bool(re.search(r"\b(useradd|groupadd|adduser|addgroup)\b", command))


@dataclass
class Image:
    root: Path  # the final stage's filesystem: /x in the image is root/x here
    venv: Path  # the image's Python (the fresh virtual environment)
    env: dict[str, str]  # the image's ENV, paths mapped, on top of this process's environment
    workdir: Path
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]
    log: str  # what the RUNs printed

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def exe(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _mapper(root: Path):
    # absolute paths in shell text: after a space, '=', quote or start; not URLs (their '//' follows a ':')
    pattern = re.compile(r"(?<![\w:/.])/(?=[A-Za-z])([\w.@*+-]+(?:/[\w.@*+-]*)*)")

    def mapped(text: str) -> str:
        return pattern.sub(lambda m: str(root / m.group(1)), text)

    return mapped


def replay(tmp: Path, *, timeout: float = 240) -> Image:
    """Build the image's filesystem under tmp; return how to run it."""
    python = tmp / "python"
    venv.EnvBuilder(with_pip=True).create(python)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_", "PYTHON", "VIRTUAL_ENV"))}
    base_env["PATH"] = f"{python / 'bin'}{os.pathsep}{base_env.get('PATH', '')}"
    roots: dict[str, Path] = {}
    log: list[str] = []
    image: Image | None = None
    for name, body in stages(load()):
        root = tmp / f"stage-{name}"
        root.mkdir()
        roots[name] = root
        mapped = _mapper(root)
        env = dict(base_env)
        workdir = root
        entrypoint: list[str] = []
        cmd: list[str] = []
        healthcheck: list[str] = []
        for ins in body:
            if ins.op == "WORKDIR":
                workdir = Path(mapped(ins.args.strip()))
                workdir.mkdir(parents=True, exist_ok=True)
            elif ins.op == "ENV":
                env.update({k: mapped(v) for k, v in env_pairs(ins).items()})
            elif ins.op == "COPY":
                *sources, dest = ins.words()
                src_root = roots[ins.flags["from"]] if "from" in ins.flags else REPO
                target = Path(mapped(dest)) if dest.startswith("/") else workdir / dest
                for src in sources:
                    origin = src_root / src.lstrip("/")
                    matches = sorted(origin.parent.glob(origin.name)) if "*" in origin.name else [origin]
                    for item in matches:
                        into_dir = dest.endswith("/") or len(sources) > 1 or (origin.is_file() and target.is_dir())
                        place = target / item.name if into_dir else target
                        if item.is_dir():
                            shutil.copytree(item, place, dirs_exist_ok=True,
                                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                        else:
                            place.parent.mkdir(parents=True, exist_ok=True)
                            shutil.copy2(item, place)
            elif ins.op == "RUN":
                command = " ".join(ins.words()) if ins.exec_form() else ins.args
                if is_user_setup(command):
                    log.append(f"(not run here: {command})")
                    continue
                for mount in [ins.flags["mount"]] if "mount" in ins.flags else []:
                    assert "type=cache" in mount, f"only cache mounts are replayed: {mount}"
                done = subprocess.run(["/bin/sh", "-c", mapped(command)], cwd=workdir, env=env, timeout=timeout,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                log.append(f"$ {mapped(command)}\n{done.stdout}")
                assert done.returncode == 0, f"RUN failed ({done.returncode}): {command}\n{done.stdout[-4000:]}"
            elif ins.op == "ENTRYPOINT":
                entrypoint = ins.words()
            elif ins.op == "CMD":
                cmd = ins.words()
            elif ins.op == "HEALTHCHECK":
                words = ins.words()
                assert words and words[0] == "CMD", ins.args
                form = Instruction("CMD", ins.args.strip()[3:].strip())
                healthcheck = form.words()
        image = Image(root=root, venv=python, env=env, workdir=workdir, entrypoint=entrypoint, cmd=cmd,
                      healthcheck=healthcheck, log="\n".join(log))
    assert image is not None, "no FROM in the Dockerfile"
    return image
