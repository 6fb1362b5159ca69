"""The set of card templates: ours, plus an admin folder that overrides or adds by name.

Every template is proven at load: it must parse, expand with its sample data, leave no `${...}` behind and produce a
card `validate_card` accepts. A broken one stops the load with `TemplateInvalid` naming the file and where in it,
so a bad admin edit is found at start-up rather than when the first event arrives.

Layout of an admin folder: `<name>.json` is a template; `<name>.sample.json` beside it is its sample data. A template
without a sample uses ours of the same name, else the `generic-event` sample.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cards.errors import CardsError, TemplateError
from cards.validate import leftover_expressions, validate_card

TEMPLATES_DIR = Path(__file__).parent / "templates"
SAMPLES_DIR = Path(__file__).parent / "samples"
FALLBACK_SAMPLE = "generic-event"


class TemplateInvalid(CardsError):
    """A template in the catalog is broken.

    Attributes:
        file: the template file.
        path: where in it (a JSON path, or `line L column C` for a JSON syntax error).
        problem: what is wrong.
    """

    def __init__(self, file: Path, path: str, problem: str):
        self.file, self.path, self.problem = file, path, problem
        super().__init__(f"{file}: {path}: {problem}")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    template: dict[str, Any]
    sample: dict[str, Any]
    source: Path
    sample_source: Path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TemplateInvalid(path, f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateInvalid(path, "$", f"cannot be read: {exc}") from exc


def _templates_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.json")) if not p.name.endswith(".sample.json")}


def check_template(template: Any, sample: dict[str, Any], source: Path) -> None:
    """Raise `TemplateInvalid` unless `template` renders `sample` into a valid, fully expanded card."""
    from cards.render import render  # render imports this module: import it here, when both are loaded

    if not isinstance(template, dict):
        raise TemplateInvalid(source, "$", "a template is a JSON object (an AdaptiveCard)")
    try:
        card = render(template, sample).card
    except TemplateError as exc:
        raise TemplateInvalid(source, exc.path, f"does not expand with its sample: {exc.reason}"
                              + (f" in ${{{exc.expression}}}" if exc.expression else "")) from exc
    problems = validate_card(card) + leftover_expressions(card)
    if problems:
        path, _, problem = problems[0].partition(": ")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TemplateInvalid(source, f"expanded card {path}", problem + more)


class Catalog:
    """Templates by name. Build with `Catalog.load(...)`; `Catalog.builtin()` is ours alone, cached."""

    def __init__(self, entries: dict[str, CatalogEntry]):
        self._entries = dict(sorted(entries.items()))
        self._texts: dict[str, str] = {}  # name -> the template as JSON text, made on first use

    @classmethod
    def load(cls, override_dir: Path | None = None) -> Catalog:
        """Load our templates and, if given, the admin folder's (same name overrides, new name adds).

        Raises:
            TemplateInvalid: a template (or its sample) is broken; names the file and the JSON path.
            FileNotFoundError: `override_dir` does not exist.
        """
        sources = _templates_in(TEMPLATES_DIR)
        if override_dir is not None:
            override_dir = Path(override_dir)
            if not override_dir.is_dir():
                raise FileNotFoundError(f"card template folder {override_dir} does not exist")
            sources.update(_templates_in(override_dir))
        entries: dict[str, CatalogEntry] = {}
        for name, source in sources.items():
            sample_source = cls._sample_path(name, source)
            template = _read_json(source)
            sample = _read_json(sample_source)
            if not isinstance(sample, dict):
                raise TemplateInvalid(sample_source, "$", "sample data must be a JSON object")
            check_template(template, sample, source)
            entries[name] = CatalogEntry(name, template, sample, source, sample_source)
        return cls(entries)

    @staticmethod
    def _sample_path(name: str, source: Path) -> Path:
        for candidate in (source.with_name(f"{name}.sample.json"), SAMPLES_DIR / f"{name}.json"):
            if candidate.is_file():
                return candidate
        return SAMPLES_DIR / f"{FALLBACK_SAMPLE}.json"

    @classmethod
    def builtin(cls) -> Catalog:
        """Our templates only, loaded once per process."""
        return _builtin()

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> dict[str, Any]:
        """A copy of the template (callers may not change the catalog). Raises KeyError for an unknown name."""
        return copy.deepcopy(self._entry(name).template)

    def template_text(self, name: str) -> str:
        """The template as JSON text (immutable, so no copy per call: `cards.render` hands it to the engine, which
        prepares a given text once). Raises KeyError for an unknown name."""
        text = self._texts.get(name)
        if text is None:
            text = self._texts[name] = json.dumps(self._entry(name).template)
        return text

    def sample(self, name: str) -> dict[str, Any]:
        """A copy of the template's sample data."""
        return copy.deepcopy(self._entry(name).sample)

    def source(self, name: str) -> Path:
        return self._entry(name).source

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def _entry(self, name: str) -> CatalogEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"no card template named {name!r}; known: {', '.join(self._entries)}") from None


@lru_cache(maxsize=1)
def _builtin() -> Catalog:
    return Catalog.load(None)
