"""The policy document: a validated YAML file whose content hash identifies the exact version used.

A policy says what is banned (categories and text rules), where (countries of sale, with
per-country overrides), from when (milestones in the policy's time zone) and how sellers are
penalised (the ladder). Exemptions granted by compliance live in a file beside the policy.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from catalogue_purge.detect.normalise import normalise
from catalogue_purge.errors import PlanMismatch, PolicyError, PurgeError

CATEGORY_SEPARATOR = " > "
CATEGORY_RULE_PREFIX = "category:"
_ID = r"^[a-z0-9][a-z0-9-]*$"
_LANG = r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$"
_COUNTRY = r"^[A-Z]{2}$"


class Action(StrEnum):
    DELIST = "delist"
    REVIEW = "review"


class Mode(StrEnum):
    LIVE = "live"  # counts in the score
    SHADOW = "shadow"  # matched and reported, never changes a decision


class Field_(StrEnum):
    TITLE = "title"
    DESCRIPTION = "description"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NonEmptyStr = Annotated[str, Field(min_length=1)]


class Milestones(_Strict):
    delisting_from: date
    penalties_from: date
    time_zone: str = "UTC"

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from exc
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Milestones:
        if self.penalties_from < self.delisting_from:
            raise ValueError("penalties_from must not be before delisting_from")
        return self

    def starts(self, day: date) -> datetime:
        """The instant a milestone day begins in the policy's time zone."""
        return datetime.combine(day, time(0), tzinfo=ZoneInfo(self.time_zone))


class CountryOverride(_Strict):
    add_rules: list[NonEmptyStr] = Field(default_factory=list)
    drop_rules: list[NonEmptyStr] = Field(default_factory=list)
    note: str | None = None


class Scope(_Strict):
    countries: Literal["all"] | list[Annotated[str, Field(pattern=_COUNTRY)]] = "all"
    overrides: dict[Annotated[str, Field(pattern=_COUNTRY)], CountryOverride] = Field(
        default_factory=dict
    )


class ProhibitedCategory(_Strict):
    path: NonEmptyStr
    clause: str | None = None
    # The category is suspended: its listings are delisted whatever their text says, unless
    # this says `review` and the text disagrees: its score is below zero (counter-evidence
    # outweighs the evidence: a mug or a desk model filed as a miner), or a rule `at_most:
    # review` fired (a used card, a hotspot, a shell that says it does not mine). Then a
    # person decides.
    when_text_disagrees: Literal["delist", "review"] = "delist"
    # And where this says `review`, a listing whose text says too little to act on by itself
    # (a score below the review threshold, and no disagreement): a phone, a book or a PC case
    # filed there, or a terse "used unit, works". The category is then the only evidence, and
    # a person decides.
    when_text_silent: Literal["delist", "review"] = "delist"

    @field_validator("path")
    @classmethod
    def _normal_path(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(">")]
        if any(not p for p in parts):
            raise ValueError(f"category path {value!r} has an empty level")
        return CATEGORY_SEPARATOR.join(parts)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def compile_regex(pattern: str | bytes) -> Any:  # re2 ships no type stubs
    """A policy regex on RE2, which matches in time linear in the text: no listing can make the
    sweep backtrack for ever, as `(a+)+b` does with Python's `re`. Given as UTF-8 bytes, it
    searches UTF-8 bytes, which spares the binding its offset conversions."""
    return re2.compile(pattern, options=_RE2_OPTIONS)


def regex_problem(pattern: str) -> str | None:
    """Why a policy regex cannot run, or None. Regexes are matched on each field's normalised
    text on its own: `^` and `$` are the start and end of the title or the description."""
    try:
        compiled = compile_regex(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return (
            f"{reason} (policy regexes run on RE2, which never backtracks: backreferences "
            "and lookaround are not available)"
        )
    if compiled.search("") is not None:
        return "it matches an empty text, so it would fire on every listing"
    lost = _letters_normalised_away(pattern)
    if lost:
        return (
            f"it spells {', '.join(repr(c) for c in lost)}, which the normalised text it runs "
            f"on never holds: write {', '.join(repr(normalise(c)) for c in lost)} (accents, case "
            "and compatibility forms are folded before the match)"
        )
    return None


def _letters_normalised_away(pattern: str) -> list[str]:
    """The letters a regex spells outside its escapes that normalisation changes ("á", "й",
    "B"): a regex holding one can never match where it is written."""
    lost: dict[str, None] = {}
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            # An escape ("\\d", "\\B"); a Unicode class ("\\p{Lu}") with its name.
            close = pattern.find("}", i) if pattern[i + 1 : i + 3] in ("p{", "P{") else -1
            i = close + 1 if close > 0 else i + 2
            continue
        if pattern.startswith("(?P<", i):
            i = pattern.find(">", i) + 1 or len(pattern)
            continue
        if (c.isalpha() or unicodedata.category(c).startswith("M")) and normalise(c) != c:
            lost[c] = None
        i += 1
    return list(lost)


class Thresholds(_Strict):
    """A listing's score (the sum of the weights of the rules that fire for it) decides: at or
    above `delist` it is delisted, at or above `review` a person decides, below it stays."""

    delist: float = Field(default=10, gt=0)
    review: float = Field(default=5, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.delist:
            raise ValueError(
                f"the review threshold ({self.review}) is above the delist threshold "
                f"({self.delist})"
            )
        return self


class ScreenAll(_Strict):
    """A screen item that needs all of its raw-text regexes in the same row."""

    all: list[NonEmptyStr] = Field(min_length=2)


class TextRule(_Strict):
    id: Annotated[str, Field(pattern=_ID)]
    description: NonEmptyStr
    # What a rule weighs: `weight` (negative for counter-evidence), or `action`, which weighs
    # the threshold it names (delist: the delist threshold; review: the review threshold).
    action: Action | None = None
    weight: float | None = None
    mode: Mode = Mode.LIVE
    # `review`: when this rule fires, no score delists the listing; at most a person decides
    # (used goods that may be parts of a rig, infrastructure "for mining farms", a listing that
    # says it does not mine). A suspended category still delists.
    at_most: Literal["review"] | None = None
    clause: str | None = None
    enabled: bool = True
    fields: list[Field_] = Field(default_factory=lambda: [Field_.TITLE, Field_.DESCRIPTION])
    terms: dict[Annotated[str, Field(pattern=_LANG)], list[NonEmptyStr]] = Field(
        default_factory=dict
    )
    regexes: list[NonEmptyStr] = Field(default_factory=list)
    # Literal words one of which every match of `regexes` contains ("btc", "th/s"): the screen
    # looks for them instead of running the regexes over every listing.
    anchors: list[NonEmptyStr] = Field(default_factory=list)
    # Or regexes over the raw text (caseless, one row at a time) that every match of `regexes`
    # lies inside: for a rule whose matches hold no literal ("110T ... 3250W"). The screen runs
    # these, simpler than the rule's own, instead of deriving one from each regex. An item
    # `{all: [a, b, ...]}` lets a row through only when every one of its regexes is found in
    # it: the first (the rarest) over every row, the others over the rows it let in. Every
    # match of the rule's regexes must hold a match of each of them.
    screen: list[NonEmptyStr | ScreenAll] = Field(default_factory=list)
    requires_any: list[NonEmptyStr] = Field(default_factory=list)
    # What the screen looks for: the rule's terms, or (with requires_any) its context terms,
    # when the terms are common words ("course", "container") and the context is not.
    screen_on: Literal["terms", "context"] = "terms"
    exclusions: list[NonEmptyStr] = Field(default_factory=list)

    @field_validator("terms")
    @classmethod
    def _no_empty_lists(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        empty = [lang for lang, terms in value.items() if not terms]
        if empty:
            raise ValueError(f"empty term list for language {', '.join(empty)}")
        return value

    @field_validator("regexes")
    @classmethod
    def _valid_regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            problem = regex_problem(pattern)
            if problem:
                raise ValueError(f"invalid regex {pattern!r}: {problem}")
        return value

    @model_validator(mode="after")
    def _something_to_match(self) -> TextRule:
        if (self.action is None) == (self.weight is None):
            raise ValueError(
                f"rule {self.id!r}: give either action (delist or review) or weight "
                "(negative for counter-evidence)"
            )
        if self.weight == 0 and self.at_most is None:
            raise ValueError(f"rule {self.id!r}: a weight of 0 never changes a decision")
        if not self.terms and not self.regexes:
            raise ValueError(f"rule {self.id!r} has neither terms nor regexes")
        if self.screen_on == "context" and not self.requires_any:
            raise ValueError(f"rule {self.id!r}: screen_on context needs requires_any")
        if self.anchors and not self.regexes:
            raise ValueError(f"rule {self.id!r} has anchors but no regexes for them to screen")
        if self.screen and not self.regexes:
            raise ValueError(f"rule {self.id!r} has a screen but no regexes for it to screen")
        if self.screen and self.anchors:
            raise ValueError(f"rule {self.id!r}: give anchors or a screen, not both")
        if not self.fields:
            raise ValueError(f"rule {self.id!r} searches no field")
        return self

    def weight_in(self, thresholds: Thresholds) -> float:
        """What the rule adds to a listing's score when it fires."""
        if self.weight is not None:
            return self.weight
        return thresholds.delist if self.action is Action.DELIST else thresholds.review

    def all_terms(self) -> list[str]:
        return [term for terms in self.terms.values() for term in terms]


class LadderStep(_Strict):
    id: Annotated[str, Field(pattern=_ID)]
    description: NonEmptyStr
    requires_approval: bool = False
    # How the step reads in a DSA statement of reasons (audit dsa): the restriction of the
    # seller's account or of the service, and for how many days (none: until lifted). A step
    # without one (a warning) restricts nothing and has no statement.
    dsa_restriction: (
        Literal[
            "DECISION_ACCOUNT_SUSPENDED",
            "DECISION_ACCOUNT_TERMINATED",
            "DECISION_PROVISION_PARTIAL_SUSPENSION",
            "DECISION_PROVISION_TOTAL_SUSPENSION",
            "DECISION_PROVISION_PARTIAL_TERMINATION",
            "DECISION_PROVISION_TOTAL_TERMINATION",
        ]
        | None
    ) = None
    days: int | None = Field(default=None, gt=0)


class Penalties(_Strict):
    ladder: list[LadderStep] = Field(min_length=1)
    evasion_jump: int = Field(default=1, ge=1)
    relist_after_warning_jump: int = Field(default=1, ge=1)


class SafetyLimits(_Strict):
    max_listings: int | None = Field(default=None, ge=0)
    max_share: float | None = Field(default=None, ge=0, le=1)
    max_per_seller: int | None = Field(default=None, ge=0)


class ReviewSettings(_Strict):
    """How people decide the listings the policy sends to review (the review queue)."""

    second_review_share: float = Field(
        default=0.1, ge=0, le=1, description="share of decisions a second reviewer checks"
    )
    claim_minutes: int = Field(
        default=30, gt=0, le=24 * 60, description="a claim not decided in time returns"
    )


class PolicyDocument(_Strict):
    id: Annotated[str, Field(pattern=_ID)]
    version: Annotated[str, Field(min_length=1)] | int
    title: NonEmptyStr
    legal_basis: str | None = None
    milestones: Milestones
    scope: Scope = Field(default_factory=Scope)
    prohibited_categories: list[ProhibitedCategory] = Field(default_factory=list)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    rules: list[TextRule] = Field(min_length=1)
    penalties: Penalties
    safety_limits: SafetyLimits = Field(default_factory=SafetyLimits)
    review: ReviewSettings = Field(default_factory=ReviewSettings)

    @model_validator(mode="after")
    def _consistent(self) -> PolicyDocument:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"duplicate rule id {rule.id!r}")
            seen.add(rule.id)
        for country, override in self.scope.overrides.items():
            for rule_id in [*override.add_rules, *override.drop_rules]:
                if rule_id not in seen:
                    raise ValueError(
                        f"scope.overrides.{country} names unknown rule {rule_id!r}; "
                        f"rules are: {', '.join(sorted(seen))}"
                    )
        if (
            not any(r.weight_in(self.thresholds) > 0 and r.mode is Mode.LIVE for r in self.rules)
            and not self.prohibited_categories
        ):
            raise ValueError(
                "no live rule with a positive weight and no category: nothing to act on"
            )
        steps = [s.id for s in self.penalties.ladder]
        if len(set(steps)) != len(steps):
            raise ValueError("duplicate step id in penalties.ladder")
        return self


@dataclass(frozen=True)
class Policy:
    """A loaded policy: the validated document, where it came from and its content hash."""

    document: PolicyDocument
    path: str
    sha256: str
    exemptions: tuple[Exemption, ...] = ()
    exemptions_sha256: str | None = None

    @property
    def id(self) -> str:
        return self.document.id

    @property
    def version(self) -> str:
        return str(self.document.version)

    def rule(self, rule_id: str) -> TextRule:
        for rule in self.document.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def clauses(self) -> dict[str, str]:
        """Each rule's and each prohibited category's clause, by rule id (those with one)."""
        by_rule = {r.id: r.clause for r in self.document.rules}
        by_rule |= {category_rule_id(c.path): c.clause for c in self.document.prohibited_categories}
        return {rule: clause for rule, clause in by_rule.items() if clause}

    def delisting_active(self, as_of: datetime) -> bool:
        ms = self.document.milestones
        return as_of >= ms.starts(ms.delisting_from)

    def penalties_active(self, as_of: datetime) -> bool:
        ms = self.document.milestones
        return as_of >= ms.starts(ms.penalties_from)

    def local_day(self, moment: datetime) -> date:
        """The day a moment falls on in the policy's time zone: the day exemptions count in."""
        return moment.astimezone(ZoneInfo(self.document.milestones.time_zone)).date()

    def exemptions_on(self, day: date) -> tuple[Exemption, ...]:
        """The exemptions in force that day (granted, not yet expired)."""
        return tuple(ex for ex in self.exemptions if ex.in_force(day))

    def rules_for(self, country: str | None) -> list[TextRule]:
        """The rules in force for a country of sale (None: the default set)."""
        override = self.document.scope.overrides.get(country or "")
        active = []
        for rule in self.document.rules:
            on = rule.enabled
            if override is not None and rule.id in override.add_rules:
                on = True
            if override is not None and rule.id in override.drop_rules:
                on = False
            if on:
                active.append(rule)
        return active

    def country_in_scope(self, country: str) -> bool:
        countries = self.document.scope.countries
        return countries == "all" or country in countries


class Exemption(_Strict):
    """A confirmed false positive: compliance exempts a listing or a seller from rules."""

    id: NonEmptyStr
    listing_id: str | None = None
    seller_id: str | None = None
    rules: list[NonEmptyStr] = Field(min_length=1, description='rule ids, or ["*"] for all')
    reason: NonEmptyStr
    granted_by: NonEmptyStr
    granted_at: date
    expires: date

    @model_validator(mode="after")
    def _one_subject(self) -> Exemption:
        if (self.listing_id is None) == (self.seller_id is None):
            raise ValueError(
                f"exemption {self.id!r} must name exactly one of listing_id, seller_id"
            )
        if self.expires < self.granted_at:
            raise ValueError(f"exemption {self.id!r} expires before it was granted")
        return self

    def in_force(self, on: date) -> bool:
        return self.granted_at <= on <= self.expires


class ExemptionsDocument(_Strict):
    policy: NonEmptyStr
    exemptions: list[Exemption] = Field(default_factory=list)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Dates stay strings for pydantic to parse, so that "2021-13-08" is reported with its key
# instead of crashing inside the YAML parser.
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _format_location(loc: Iterable[int | str], raw: Any) -> str:
    """rules[3].terms.en, using the rule's id where there is one."""
    out = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            label = f"[{part}]"
            item = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(item, dict) and "id" in item:
                label = f"[{part}] (id {item['id']})"
            out += label
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _problems(exc: ValidationError, raw: Any, model: type[BaseModel]) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        # Pydantic reports union branches as an extra location element; drop those labels.
        loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("literal")))]
        where = _format_location(loc, raw)
        if err["type"] == "extra_forbidden":
            parent_model = _model_at(model, loc[:-1])
            valid = (
                ", ".join(parent_model.model_fields) if parent_model else "see the documentation"
            )
            problems.append(f"{where}: unknown key {loc[-1]!r}; valid keys: {valid}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
    return problems


def _model_at(model: type[BaseModel], loc: list[int | str]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _read_yaml(path: Path) -> tuple[Any, bytes]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    try:
        return yaml.load(data, Loader=_UniqueKeyLoader), data  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError(str(path), [f"not valid YAML: {exc}"]) from exc


def exemptions_path(policy_path: Path) -> Path:
    """Exemptions live beside the policy: x.yaml -> x.exemptions.yaml."""
    return policy_path.with_name(f"{policy_path.stem}.exemptions{policy_path.suffix}")


def load_policy(path: str | Path, exemptions: str | Path | None = None) -> Policy:
    """Load and validate a policy and, if present, the exemptions file beside it."""
    path = Path(path)
    raw, data = _read_yaml(path)
    if not isinstance(raw, dict):
        raise PolicyError(str(path), ["(top level): expected a mapping of keys such as id, rules"])
    # Top-level keys starting with "x-" hold YAML anchors shared by rules (as in OpenAPI).
    raw = {k: v for k, v in raw.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        document = PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(str(path), _problems(exc, raw, PolicyDocument)) from None

    ex_path = Path(exemptions) if exemptions is not None else exemptions_path(path)
    granted: tuple[Exemption, ...] = ()
    ex_sha = None
    if ex_path.exists():
        granted, ex_sha = _load_exemptions(ex_path, document)
    elif exemptions is not None:
        raise PolicyError(str(ex_path), ["exemptions file does not exist"])
    return Policy(document, str(path), hashlib.sha256(data).hexdigest(), granted, ex_sha)


def _load_exemptions(path: Path, document: PolicyDocument) -> tuple[tuple[Exemption, ...], str]:
    raw, data = _read_yaml(path)
    if raw is None:
        raw = {"policy": document.id, "exemptions": []}
    try:
        parsed = ExemptionsDocument.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(str(path), _problems(exc, raw, ExemptionsDocument)) from None
    problems = []
    if parsed.policy != document.id:
        problems.append(f"policy: names {parsed.policy!r}, but the policy is {document.id!r}")
    known = {r.id for r in document.rules} | {
        CATEGORY_RULE_PREFIX + c.path for c in document.prohibited_categories
    }
    ids: set[str] = set()
    for i, ex in enumerate(parsed.exemptions):
        if ex.id in ids:
            problems.append(f"exemptions[{i}] (id {ex.id}): duplicate exemption id")
        ids.add(ex.id)
        for rule_id in ex.rules:
            if rule_id != "*" and rule_id not in known:
                problems.append(
                    f"exemptions[{i}] (id {ex.id}).rules: unknown rule {rule_id!r}; "
                    f"valid: *, {', '.join(sorted(known))}"
                )
    if problems:
        raise PolicyError(str(path), problems)
    return tuple(parsed.exemptions), hashlib.sha256(data).hexdigest()


def load_recorded(
    policies_dir: Path,
    identity: dict,
    *,
    exemptions: bool = False,
    error: type[PurgeError] = PlanMismatch,
) -> Policy:
    """The policy on hand (policies_dir/<id>.yaml) that a run recorded as `identity` (id,
    sha256, exemptions_sha256), refusing any other version, and with `exemptions` any other
    exemptions too."""
    policy = load_policy(policies_dir / f"{identity['id']}.yaml")
    on_hand = (policy.sha256, policy.exemptions_sha256 if exemptions else None)
    recorded = (identity["sha256"], identity.get("exemptions_sha256") if exemptions else None)
    if on_hand != recorded:
        raise error(
            f"policy {policy.id} on hand (sha256 {policy.sha256[:12]}) or its exemptions are not "
            f"those the run used (sha256 {identity['sha256'][:12]}); "
            "start a new run with the new policy"
        )
    return policy


def category_rule_id(path: str) -> str:
    return CATEGORY_RULE_PREFIX + path


POLICIES_ENV = "CATALOGUE_PURGE_POLICIES"


def shipped_policies() -> Path:
    """The folder of the policies shipped with the code: inside the installed package (a
    Lambda package), or policies/ of the source tree. CATALOGUE_PURGE_POLICIES overrides it
    (the local run of a policy under review)."""
    if os.environ.get(POLICIES_ENV):
        return Path(os.environ[POLICIES_ENV])
    packaged = Path(__file__).resolve().parents[1] / "_policies"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "policies"
