"""engine/httpsig_canonical.py against http_sfv, generated: whatever the fast reading accepts, http_sfv
reads the same (label, components, parameters, signature bytes, and the member's serialization as its
`@signature-params` line). Members are built from canonical pieces, pieces outside the canonical
grammar (tokens, booleans, decimals, escapes, parameters on components, odd integers, whitespace), and
then mutated by a character or two: a fast reading that accepts where http_sfv disagrees would sign
a different base than the full verifier checks."""

from __future__ import annotations

import base64

import http_sfv
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from aonode.engine import httpsig_canonical

pytestmark = pytest.mark.slow  # hypothesis: 1,500 generated pairs


def _mostly(usual: st.SearchStrategy[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`usual` nine times in ten (st.one_of would weigh each of `odd`'s own alternatives as much)."""
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else usual)


KEYS = _mostly(
    st.sampled_from(["alg", "keyid", "created", "tag", "nonce", "a*b", "x-y.z"]), st.sampled_from(["_k", "K", "1a", ""])
)
PRINTABLE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'), max_size=12
)
STRINGS = _mostly(PRINTABLE, st.text(alphabet=st.characters(min_codepoint=0x1F, max_codepoint=0x80), max_size=12))
ESCAPED = st.tuples(PRINTABLE, st.sampled_from(['\\"', "\\\\"]), PRINTABLE).map(lambda t: f'"{t[0]}{t[1]}{t[2]}"')
QUOTED = _mostly(STRINGS.map(lambda s: f'"{s}"'), ESCAPED)
NUMBERS = st.sampled_from(["0", "-0", "007", "12", "-3", "1.5", "9999999999999999", "123456789012345"])
ODD_VALUES = NUMBERS | st.sampled_from(["tok", "?1", "?0", ":QUJD:", "*x"])
VALUES = _mostly(QUOTED | st.sampled_from(["0", "12", "-3", "1700000000"]), ODD_VALUES)
PARAMS = st.lists(st.tuples(KEYS, VALUES | VALUES | st.none()), max_size=3).map(
    lambda ps: "".join(f";{k}" + ("" if v is None else f"={v}") for k, v in ps)
)
SPACES = st.sampled_from([" ", "  ", "\t", ""])
COMPONENT = _mostly(QUOTED, st.sampled_from(['"@method"', '"content-digest"', "tok"]))
COMPONENTS = st.lists(st.tuples(COMPONENT, _mostly(st.just(""), PARAMS)), max_size=3)
INNER = st.builds(
    lambda comps, sp, params: "(" + sp.join(c + p for c, p in comps) + ")" + params,
    COMPONENTS,
    _mostly(st.just(" "), SPACES),
    PARAMS,
)
VALID_B64 = st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
B64 = _mostly(VALID_B64, st.sampled_from(["QUJD", "QUJ", "QU=D", "Q", "QUJDRA", "QUJDRA=="]))


def _dictionary(members: list[tuple[str, str]], seps: list[str]) -> str:
    out = ""
    for n, (key, value) in enumerate(members):
        out += (seps[n % len(seps)] if n else "") + (f"{key}={value}" if value else key)
    return out


SEPS = st.lists(st.sampled_from([", ", ",", " , ", ",\t", " ,"]), min_size=1, max_size=3)
LABELS = st.sampled_from(["sig", "sig2", "http-sig-1a2b", "a*b"])


@st.composite
def _fields(draw: st.DrawFn) -> tuple[str, str]:
    """(signature, signature-input): mostly each input's label with a signature, some of them not."""
    member = st.tuples(LABELS, _mostly(INNER, VALUES))
    unique = draw(st.integers(0, 4)) > 0
    members = draw(st.lists(member, min_size=1, max_size=3, unique_by=(lambda m: m[0]) if unique else None))
    signed = [(label, f":{draw(B64)}:") for label, _ in members if draw(st.integers(0, 9))]
    signed += draw(
        st.lists(st.tuples(LABELS, B64.map(lambda b: f":{b}:") | B64.map(lambda b: f":{b}:") | VALUES), max_size=1)
    )
    seps = draw(SEPS)
    return _dictionary(draw(st.permutations(signed)), seps), _dictionary(members, seps)


def _mutate(draw: st.DrawFn, out: str) -> str:
    for _ in range(draw(st.integers(0, 2)) * draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(out)))
        out = (
            out[:at]
            + draw(st.sampled_from(['"', "\\", ";", "=", "(", ")", ",", " ", ":", "a", "é", ""]))
            + out[at + 1 :]
        )
    return out


def _sfv(signature: str, signature_input: str) -> list[tuple[str, tuple[str, ...], dict, str, bytes]]:
    sigs, inputs = http_sfv.Dictionary(), http_sfv.Dictionary()
    sigs.parse(signature.encode("latin-1"))
    inputs.parse(signature_input.encode("latin-1"))
    return [
        (label, tuple(str(i.value) for i in m), dict(m.params), str(m), sigs[label].value)
        for label, m in inputs.items()
    ]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_what_the_fast_reading_accepts_http_sfv_reads_the_same(data: st.DataObject) -> None:
    signature, signature_input = data.draw(_fields())
    signature, signature_input = _mutate(data.draw, signature), _mutate(data.draw, signature_input)
    ours = httpsig_canonical.parse(signature, signature_input)
    if ours is None:
        return  # http_sfv decides, as before
    assert _sfv(signature, signature_input) == [
        (i.label, i.components, i.params, i.params_line, i.signature) for i in ours
    ]
