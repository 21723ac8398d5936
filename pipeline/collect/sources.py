"""The source mapping file (``schemas/sources.yaml``): provider by model-name prefix, and for
Claude Code transcripts the known record types and the role hints (docs/sources.md).

::

    mapping = load_sources("schemas/sources.yaml")     # ConfigError names file:line: field
    mapping.provider_of("glm-4.5")                     # 'zai'
    mapping.claude_code.agent_types["Plan"]            # 'architect'
    mapping.otel.role_attributes                       # ('modelmeter.role', ...)

Read with :func:`pipeline.config_files.read_yaml` (no aliases, no duplicate keys, bounded
size). ``providers`` and ``claude_code`` are required; ``otel`` and ``litellm`` (the
sections of ``collect http``) are optional here and required by that collector
(:meth:`SourceMapping.require`). Other sections are not read here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline._exceptions import ConfigError
from pipeline.config_files import YamlDocument, read_yaml

__all__ = [
    "UNKNOWN_PROVIDER",
    "ClaudeCodeMapping",
    "OtelMapping",
    "LiteLLMMapping",
    "SourceMapping",
    "load_sources",
    "OTEL_FIELDS",
]

#: The provider of a model no prefix matches (reported unpriced, never dropped).
UNKNOWN_PROVIDER = "unknown"


@dataclass(frozen=True, slots=True)
class ClaudeCodeMapping:
    """The ``claude_code`` section."""

    known_record_types: frozenset[str]
    agent_types: dict[str, str] = field(default_factory=dict)
    projects: tuple[tuple[str, str], ...] = ()
    models: dict[str, str] = field(default_factory=dict)

    def project_role(self, project: str) -> str | None:
        """The role of the first ``projects`` glob that matches the directory name."""
        for pattern, role in self.projects:
            if fnmatch.fnmatchcase(project, pattern):
                return role
        return None


#: The fields of a GenAI span or event whose attribute names ``otel.attributes`` lists.
OTEL_FIELDS = (
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)


@dataclass(frozen=True, slots=True)
class OtelMapping:
    """The ``otel`` section (OpenTelemetry logs and spans of ``collect http``)."""

    role_attributes: tuple[str, ...]
    roles: dict[str, str]
    claude_code_events: frozenset[str]
    call_operations: frozenset[str]
    attributes: dict[str, tuple[str, ...]]  # a field of OTEL_FIELDS -> attribute names
    provider_names: dict[str, str]


@dataclass(frozen=True, slots=True)
class LiteLLMMapping:
    """The ``litellm`` section (LiteLLM proxy's generic API logger, ``collect http``)."""

    role_tag_prefix: str
    task_tag_prefix: str
    teams: dict[str, str]
    key_aliases: dict[str, str]
    provider_names: dict[str, str]


@dataclass(frozen=True, slots=True)
class SourceMapping:
    """A validated source mapping file."""

    path: str
    providers: tuple[tuple[str, str], ...]
    claude_code: ClaudeCodeMapping
    otel: OtelMapping | None = None
    litellm: LiteLLMMapping | None = None

    def require(self, *sections: str) -> None:
        """ConfigError naming the file when one of the optional ``sections`` is missing."""
        for section in sections:
            if getattr(self, section) is None:
                raise ConfigError(f"{self.path}: {section}: required section missing")

    def provider_of(self, model: str) -> str:
        """The provider of the first prefix ``model`` starts with, else ``unknown``."""
        for prefix, provider in self.providers:
            if model.startswith(prefix):
                return provider
        return UNKNOWN_PROVIDER


class _Reader:
    """Typed access to the document with ``file:line: field: problem`` errors."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc

    def fail(self, at: tuple[str | int, ...], problem: str) -> ConfigError:
        line = None
        for i in range(len(at), 0, -1):
            line = self.doc.lines.get(at[:i])
            if line is not None:
                break
        dotted = ""
        for part in at:
            dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else part)
        where = f"{self.doc.path}{f':{line}' if line else ''}"
        return ConfigError(f"{where}: {dotted or 'top level'}: {problem}")

    def mapping(self, value: Any, at: tuple[str | int, ...], keys: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(at, f"expected a mapping, got {type(value).__name__}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(at, f"keys must be strings, got {key!r}")
            if keys and key not in keys:
                raise self.fail((*at, key), f"unknown field (fields: {', '.join(sorted(keys))})")
        return value

    def text(self, value: Any, at: tuple[str | int, ...]) -> str:
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            raise self.fail(at, f"expected a non-empty printable string, got {value!r}")
        if len(value) > 128:
            raise self.fail(at, "longer than 128 characters")
        return value

    def items(self, value: Any, at: tuple[str | int, ...]) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(at, f"expected a list, got {type(value).__name__}")
        return value

    def names(self, value: Any, at: tuple[str | int, ...]) -> dict[str, str]:
        return {
            self.text(k, (*at, k)): self.text(v, (*at, k))
            for k, v in self.mapping(value, at, set()).items()
        }


def load_sources(path: str | Path) -> SourceMapping:
    """Read and validate the mapping file at ``path`` (ConfigError, exit 2, when bad)."""
    doc = read_yaml(path, what="source mapping")
    r = _Reader(doc)
    for section in ("providers", "claude_code"):
        if section not in doc.data:
            raise r.fail((section,), "required section missing")
    providers = []
    for i, item in enumerate(r.items(doc.data["providers"], ("providers",))):
        entry = r.mapping(item, ("providers", i), {"prefix", "provider"})
        if set(entry) != {"prefix", "provider"}:
            raise r.fail(("providers", i), "expected {prefix: ..., provider: ...}")
        providers.append(
            (r.text(entry["prefix"], ("providers", i)), r.text(entry["provider"], ("providers", i)))
        )
    cc_at: tuple[str | int, ...] = ("claude_code",)
    cc = r.mapping(doc.data["claude_code"], cc_at, {"known_record_types", "roles"})
    types = frozenset(
        r.text(t, (*cc_at, "known_record_types", i))
        for i, t in enumerate(r.items(cc.get("known_record_types"), (*cc_at, "known_record_types")))
    )
    if "assistant" in types:
        raise r.fail(
            (*cc_at, "known_record_types"),
            "'assistant' lines are API calls, not a record type to ignore",
        )
    roles_at = (*cc_at, "roles")
    roles = r.mapping(cc.get("roles"), roles_at, {"agent_types", "projects", "models"})
    projects = []
    for i, item in enumerate(r.items(roles.get("projects"), (*roles_at, "projects"))):
        at = (*roles_at, "projects", i)
        entry = r.mapping(item, at, {"match", "role"})
        if set(entry) != {"match", "role"}:
            raise r.fail(at, "expected {match: GLOB, role: ROLE}")
        projects.append((r.text(entry["match"], at), r.text(entry["role"], at)))
    mapping = ClaudeCodeMapping(
        known_record_types=types,
        agent_types=r.names(roles.get("agent_types"), (*roles_at, "agent_types")),
        projects=tuple(projects),
        models=r.names(roles.get("models"), (*roles_at, "models")),
    )
    return SourceMapping(
        path=str(path),
        providers=tuple(providers),
        claude_code=mapping,
        otel=_otel(r, doc.data["otel"]) if "otel" in doc.data else None,
        litellm=_litellm(r, doc.data["litellm"]) if "litellm" in doc.data else None,
    )


def _text_list(r: _Reader, value: Any, at: tuple[str | int, ...]) -> tuple[str, ...]:
    return tuple(r.text(v, (*at, i)) for i, v in enumerate(r.items(value, at)))


def _otel(r: _Reader, value: Any) -> OtelMapping:
    at: tuple[str | int, ...] = ("otel",)
    keys = {
        "role_attributes",
        "roles",
        "claude_code_events",
        "call_operations",
        "attributes",
        "provider_names",
    }
    section = r.mapping(value, at, keys)
    for key in ("role_attributes", "claude_code_events", "attributes"):
        if not section.get(key):
            raise r.fail((*at, key), "required and not empty")
    attributes_at = (*at, "attributes")
    raw = r.mapping(section["attributes"], attributes_at, set(OTEL_FIELDS))
    attributes = {}
    for name in OTEL_FIELDS:
        names = _text_list(r, raw.get(name), (*attributes_at, name))
        if not names:
            raise r.fail((*attributes_at, name), "a non-empty list of attribute names is required")
        attributes[name] = names
    return OtelMapping(
        role_attributes=_text_list(r, section["role_attributes"], (*at, "role_attributes")),
        roles=r.names(section.get("roles"), (*at, "roles")),
        claude_code_events=frozenset(
            _text_list(r, section["claude_code_events"], (*at, "claude_code_events"))
        ),
        call_operations=frozenset(
            _text_list(r, section.get("call_operations"), (*at, "call_operations"))
        ),
        attributes=attributes,
        provider_names=r.names(section.get("provider_names"), (*at, "provider_names")),
    )


def _litellm(r: _Reader, value: Any) -> LiteLLMMapping:
    at: tuple[str | int, ...] = ("litellm",)
    keys = {"role_tag_prefix", "task_tag_prefix", "teams", "key_aliases", "provider_names"}
    section = r.mapping(value, at, keys)
    for key in ("role_tag_prefix", "task_tag_prefix"):
        if key not in section:
            raise r.fail((*at, key), "required")
    return LiteLLMMapping(
        role_tag_prefix=r.text(section["role_tag_prefix"], (*at, "role_tag_prefix")),
        task_tag_prefix=r.text(section["task_tag_prefix"], (*at, "task_tag_prefix")),
        teams=r.names(section.get("teams"), (*at, "teams")),
        key_aliases=r.names(section.get("key_aliases"), (*at, "key_aliases")),
        provider_names=r.names(section.get("provider_names"), (*at, "provider_names")),
    )
