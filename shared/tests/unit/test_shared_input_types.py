"""Hostile text input: control characters and card numbers refused in any layout (NO-PAN)."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.input_types import (
    BLANK_MESSAGE,
    CARD_ISSUERS,
    CARD_NUMBER_MESSAGE,
    CONTROL_CHARACTER_CLASS,
    CONTROL_CHARACTERS_MESSAGE,
    EMAIL_MAX_LENGTH,
    MAX_LUHN_CHECKS,
    MAX_SEPARATOR_UNITS,
    MAX_VALUE_SEARCH_CHARACTERS,
    NO_CONTROL_CHARACTERS_PATTERN,
    NOT_BLANK_PATTERN,
    SAFE_TEXT_MAX_LENGTH,
    SHORT_TEXT_MAX_LENGTH,
    Description,
    EmailAddress,
    Name,
    Reference,
    SafeText,
    _CardNumberScan,
    _is_control_character,
    contains_card_number,
    find_card_number_path,
    is_valid_iban,
    refuse_card_numbers,
    refuse_control_characters,
)

VISA = "4111111111111111"


class _Note(BaseModel):
    # What a route's model does: pydantic keeps the input out of str(ValidationError).
    model_config = ConfigDict(hide_input_in_errors=True)

    text: SafeText


class _Customer(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    name: Name
    email: EmailAddress
    reference: Reference | None = None


def _messages(error: ValidationError) -> list[str]:
    return [e["msg"] for e in error.errors(include_input=False)]


def _luhn_check_digit(payload: str) -> str:
    """The digit that makes payload + digit pass Luhn, worked out here rather than imported."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        value = int(char) * (1 if position % 2 else 2)  # the check digit will be rightmost
        total += value - 9 if value > 9 else value
    return str(-total % 10)


# ---------------------------------------------------------------- card numbers in any layout


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A valid card number: an issuer's prefix and length from the table, then the Luhn digit."""
    issuer = draw(st.sampled_from(CARD_ISSUERS))
    first, last = draw(st.sampled_from(issuer.prefix_ranges))
    prefix = str(draw(st.integers(first, last)))
    length = draw(st.sampled_from(issuer.lengths))
    size = length - 1 - len(prefix)
    payload = prefix + draw(st.text("0123456789", min_size=size, max_size=size))
    return payload + _luhn_check_digit(payload)


# One separator between two groups is 1 to 4 of these, mixed: at most MAX_SEPARATOR_UNITS units.
SEPARATOR_CHARACTERS = (
    " ./_-\t\n\r"
    "\u00a0\u2002\u2003\u2009\u200a\u202f\u3000"  # NBSP and other Unicode spaces
    "\u200b\u200c\u200d\u2060\ufeff"  # zero-width characters
)
# The zero of ASCII, fullwidth, Arabic-Indic, Persian, Devanagari, Thai and mathematical digits.
DIGIT_ZEROS = (0x30, 0xFF10, 0x660, 0x6F0, 0x966, 0xE50, 0x1D7CE)
BEFORE = ("", "card ", "card:", "Karte: ", "ref 12 ", "note\n", "(", "paid with ", "n°", "x")
AFTER = ("", " 2030", "!", " exp 12/29", "@example.com", ")", " thanks", ".", "x", " 12 34")


@st.composite
def card_number_layouts(draw: st.DrawFn, card: str) -> str:
    """card split in groups of any sizes, any separators, digits of any script, any neighbours."""
    cuts = sorted(draw(st.sets(st.integers(1, len(card) - 1), max_size=len(card) - 1)))
    groups = [card[start:end] for start, end in zip([0, *cuts], [*cuts, len(card)], strict=True)]
    separators = st.text(SEPARATOR_CHARACTERS, min_size=1, max_size=MAX_SEPARATOR_UNITS)
    laid_out = groups[0]
    for group in groups[1:]:
        laid_out += draw(separators) + group
    digits = "".join(
        chr(draw(st.sampled_from(DIGIT_ZEROS)) + int(char)) if char.isdigit() else char
        for char in laid_out
    )
    return draw(st.sampled_from(BEFORE)) + digits + draw(st.sampled_from(AFTER))


@pytest.mark.clause("NO-PAN")
@settings(max_examples=400, deadline=None)
@given(card=card_numbers(), data=st.data())
def test_no_pan_a_card_number_is_found_in_any_layout_and_refused_without_echo(
    card: str, data: st.DataObject
) -> None:
    text = data.draw(card_number_layouts(card))
    assert contains_card_number(text)
    with pytest.raises(ValidationError) as refused:
        _Note(text=text)
    # Refused for holding a card number, or first for a control character (TAB, LF, ZWSP...).
    assert set(_messages(refused.value)) <= {
        f"Value error, {CARD_NUMBER_MESSAGE}",
        f"Value error, {CONTROL_CHARACTERS_MESSAGE}",
    }
    assert card not in str(refused.value)
    assert card not in json.dumps(refused.value.errors(include_input=False), default=str)


@pytest.mark.clause("NO-PAN")
@pytest.mark.parametrize(
    "text",
    [
        "4111.1111.1111.1111",
        "4111/1111/1111/1111",
        "4111_1111_1111_1111",
        "4111  1111  1111  1111",
        "4111\u00a01111\u00a01111\u00a01111",
        "4111\t1111\t1111\t1111",
        "4111\n1111\n1111\n1111",
        "4111\r\n1111\r\n1111\r\n1111",
        "4111 1111-1111.1111",
        "4111 - 1111 / 1111 . 1111",
        "4111\u2003\u20091111\u30001111\u202f1111",
        "4111\u200b1111\u200c1111\u200d1111\u2060",
        "\u200b".join(VISA),
        "\ufeff\u034f".join(VISA),  # a zero-width no-break space and a combining mark
        "4111          1111          1111          1111",  # a whitespace run is one unit
        "4111 1111 1111 1111 2030",
        "ref 12 4111111111111111",
        "12 34 4111 1111 1111 1111 56",
        "card:4111111111111111!",
        "card4111111111111111exp",
        "4111111111111111@example.com",
        "mail me: john.4111111111111111@example.com",
        "5500-0000-0000-0004",
        "378282246310005",
        "3782 822463 10005",
        "4222222222222",
        "6011 0009 9013 9424",
        "+4111 1111 1111 1111",  # 16 digits after a + cannot be a phone number
        "4111 +1111 1111 1111",
        "DE89 3704 0044 0532 0130 00 4111 1111 1111 1111",
    ],
)
def test_no_pan_card_numbers_are_found_whatever_separates_or_surrounds_them(text: str) -> None:
    assert contains_card_number(text)


SUPERSCRIPTS = str.maketrans(
    "0123456789", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
)


def _in_script(zero: int, text: str) -> str:
    """text with its ASCII digits written in the script whose zero is the code point `zero`."""
    return "".join(chr(zero + int(char)) if char.isdigit() else char for char in text)


@pytest.mark.clause("NO-PAN")
@pytest.mark.parametrize(
    "text",
    [
        _in_script(0xFF10, "4111 1111 1111 1111"),  # fullwidth
        _in_script(0x0660, "4111 1111 1111 1111"),  # Arabic-Indic
        _in_script(0x06F0, VISA),  # Persian
        _in_script(0x0966, "4111 1111 1111 1111"),  # Devanagari
        _in_script(0x1D7CE, VISA),  # mathematical bold
        "4111 1111 1111 1111".translate(SUPERSCRIPTS),  # not decimal digits, NFKC makes them so
        "\u2463" + "\u2460" * 15,  # circled 4111111111111111 (NFKC)
        "".join(map(_in_script, DIGIT_ZEROS * 3, VISA)),  # every script at once
    ],
)
def test_no_pan_unicode_digits_count_as_the_digits_they_stand_for(text: str) -> None:
    assert contains_card_number(text)


@pytest.mark.clause("NO-PAN")
def test_no_pan_only_luhn_valid_numbers_with_an_issuer_prefix_count() -> None:
    assert not contains_card_number("4111111111111112")  # fails Luhn
    for first in "0179":  # no scheme issues numbers starting with these
        payload = first + "11111111111111"
        assert not contains_card_number(payload + _luhn_check_digit(payload))
    for issuer in CARD_ISSUERS:
        for first, _ in issuer.prefix_ranges:
            payload = str(first).ljust(15, "0")
            assert contains_card_number(payload + _luhn_check_digit(payload)), issuer.scheme


@pytest.mark.clause("NO-PAN")
def test_no_pan_digits_set_further_apart_than_the_separator_bound_are_separate_values() -> None:
    joined = "," * MAX_SEPARATOR_UNITS
    apart = "," * (MAX_SEPARATOR_UNITS + 1)
    assert contains_card_number(joined.join(["4111", "1111", "1111", "1111"]))
    assert not contains_card_number(apart.join(["4111", "1111", "1111", "1111"]))


@pytest.mark.clause("NO-PAN")
def test_no_pan_a_number_glued_into_a_longer_run_of_digits_is_not_a_card_number() -> None:
    # Windows start and end where groups of digits do: a 20-digit reference is not refused.
    assert not contains_card_number("41111111111111112030")
    assert not contains_card_number("Order 12345678901234567890")


# ---------------------------------------------------------------- ordinary values


@st.composite
def dates(draw: st.DrawFn) -> str:
    day = draw(st.dates(date(1950, 1, 1), date(2099, 12, 31)))
    layouts = [
        day.isoformat(),
        day.strftime("%d/%m/%Y"),
        day.strftime("%d.%m.%Y"),
        day.strftime("%m/%d/%Y"),
        day.strftime("%Y/%m/%d"),
        day.strftime("%d-%m-%Y"),
        day.strftime("%Y%m%d"),
        day.strftime("%d %B %Y"),
        f"{day.day}/{day.month}/{day.year}",
        f"{day.month}/{day.day}/{day.year}",
        f"{day.day}.{day.month}.{day.year}",
    ]
    return draw(st.sampled_from(layouts))


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    offset = draw(
        st.sampled_from(
            [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
        )
    )
    moment = draw(
        st.datetimes(datetime(1970, 1, 1), datetime(2099, 12, 31), timezones=st.just(offset))
    )
    return draw(
        st.sampled_from([moment.isoformat(), moment.isoformat(sep=" "), f"{moment:%Y-%m-%d %H:%M}"])
    )


def _grouped(digits: str, sizes: list[int], separator: str) -> str:
    groups, rest = [], digits
    for size in sizes:
        if rest:
            groups.append(rest[:size])
            rest = rest[size:]
    return separator.join([*groups, rest] if rest else groups)


@st.composite
def phone_numbers(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["international", "national", "north american"]))
    if kind == "international":  # E.164: at most 15 digits in all
        country = draw(
            st.sampled_from(
                ["1", "7", "30", "33", "34", "39", "44", "49", "55", "62", "81", "86", "353", "971"]
            )
        )
        size = draw(st.integers(8 - len(country), 15 - len(country)))
        national = draw(st.text("0123456789", min_size=size, max_size=size))
        sizes = draw(st.lists(st.integers(2, 4), min_size=1, max_size=5))
        return f"+{country} " + _grouped(national, sizes, draw(st.sampled_from([" ", "-", "."])))
    if kind == "national":  # a trunk 0, at most 12 digits
        area = draw(st.text("0123456789", min_size=1, max_size=4))
        size = draw(st.integers(5, 11 - len(area)))
        local = draw(st.text("0123456789", min_size=size, max_size=size))
        sizes = draw(st.lists(st.integers(2, 4), min_size=1, max_size=4))
        area_code = draw(st.sampled_from([f"0{area} ", f"(0{area}) ", f"0{area}/", f"0{area}-"]))
        return area_code + _grouped(local, sizes, draw(st.sampled_from([" ", "-", ""])))
    area = draw(st.integers(200, 999))
    line = f"{draw(st.integers(200, 999))}-{draw(st.integers(0, 9999)):04d}"
    layouts = [f"({area}) {line}", f"{area}-{line}", f"1-{area}-{line}", f"+1 {area} {line}"]
    return draw(st.sampled_from(layouts))


# Per country, the BBAN: n digits, a capital letters, c letters or digits (ISO 13616 registry).
IBAN_LAYOUTS = {
    "DE": "18n", "FR": "10n11c2n", "GB": "4a14n", "NL": "4a10n", "ES": "20n",
    "IT": "1a10n12c", "BE": "12n", "CH": "5n12c", "AT": "16n", "PL": "24n",
}  # fmt: skip
ALPHABETS = {
    "n": "0123456789",
    "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "c": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
}


@st.composite
def ibans(draw: st.DrawFn) -> str:
    """A valid IBAN of one of a few countries: its BBAN, then check digits that make mod-97 1."""
    country = draw(st.sampled_from(sorted(IBAN_LAYOUTS)))
    bban = ""
    for count, kind in re.findall(r"([0-9]+)([nac])", IBAN_LAYOUTS[country]):
        size = int(count)
        bban += draw(st.text(ALPHABETS[kind], min_size=size, max_size=size))
    numeric = "".join(str(int(char, 36)) for char in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    return draw(st.sampled_from([iban, " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))]))


@st.composite
def amounts(draw: st.DrawFn) -> str:
    value = draw(st.decimals(min_value=0, max_value=10**9, places=2))
    english = f"{value:,.2f}"
    german = english.translate(str.maketrans(",.", ".,"))
    french = english.replace(",", draw(st.sampled_from([" ", "\u00a0", "\u202f"]))).replace(
        ".", ","
    )
    layout = draw(
        st.sampled_from([english, german, french, f"{value:.2f}", english.replace(",", "'")])
    )
    return draw(st.sampled_from(["{}", "EUR {}", "{} EUR", "€{}", "$ {}", "{} €"])).format(layout)


ORDINARY_VALUES = st.one_of(
    dates(),
    timestamps(),
    phone_numbers(),
    ibans(),
    amounts(),
    st.uuids().map(str),
    st.integers(1, 999_999).map(lambda number: f"INV-{number:06d}"),
)
# How values are put side by side in text: lists, ranges, lines, words.
JOINERS = (", ", " - ", " / ", "; ", " and ", "\n", " | ", " to ")


@st.composite
def ordinary_sentences(draw: st.DrawFn) -> str:
    values = draw(st.lists(ORDINARY_VALUES, min_size=1, max_size=3))
    text = values[0]
    for value in values[1:]:
        text += draw(st.sampled_from(JOINERS)) + value
    opening = draw(st.sampled_from(["", "Invoice ", "Paid on ", "Call ", "Ref: "]))
    return opening + text + draw(st.sampled_from(["", ".", " thanks"]))


@pytest.mark.clause("NO-PAN")
@settings(max_examples=600, deadline=None)
@given(ordinary_sentences())
def test_no_pan_ordinary_values_and_sentences_of_them_are_not_card_numbers(text: str) -> None:
    assert not contains_card_number(text)
    assert refuse_card_numbers(text) == text


@pytest.mark.clause("NO-PAN")
@pytest.mark.parametrize(
    "text",
    [
        "2024-01-31",
        "31/01/2024",
        "2024-01-01 2024-01-31",
        "30/01/2024 - 31/01/2024",
        "Period 23/01/2024 - 27/02/2024 - 30/03/2024",
        "2024-01-31T12:34:56.123456+02:00",
        "2024-01-31T23:59:59.999999+02:00 2024-02-01",
        "+44 20 7946 0958",
        "+49 1512 3456789",
        "+55 11 91234-5678",
        "Tel. +49 (0)151 2345 6789, 2024-01-31",
        "0151 23456789, 030 1234567",
        "(555) 123-4567",
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "FR14 2004 1010 0505 0001 3M02 606",
        "GB82 WEST 1234 5698 7654 32",
        "IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX",
        "INV-000042",
        "INV-412345, 30/01/2024",
        "1,234,567.89",
        "EUR 12 345,67",
        "4,500.00, 3,200.00, 1,300.00",
        "123e4567-e89b-12d3-a456-426614174000",
        "4111111111111112",  # fails Luhn
        "",
    ],
)
def test_no_pan_ordinary_values_from_the_bug_report_are_not_card_numbers(text: str) -> None:
    assert not contains_card_number(text)


def test_an_iban_needs_a_known_country_its_length_and_valid_check_digits() -> None:
    for iban in (
        "DE89 3704 0044 0532 0130 00",
        "de89370400440532013000",
        "FR14 2004 1010 0505 0001 3M02 606",
        "GB82 WEST 1234 5698 7654 32",
    ):
        assert is_valid_iban(iban), iban
    for wrong in (
        "DE88 3704 0044 0532 0130 00",  # check digits
        "DE89 3704 0044 0532 0130 0",  # length
        "ZZ89 3704 0044 0532 0130 00",  # country
    ):
        assert not is_valid_iban(wrong), wrong


@pytest.mark.clause("NO-PAN")
def test_no_pan_the_work_on_a_megabyte_of_hostile_text_is_capped() -> None:
    sentence = (
        "Invoice INV-000042 of 2024-01-31 for EUR 12 345,67, paid from DE89 3704 0044 0532 0130"
        " 00; call +49 151 23456789 or (555) 123-4567 about order 12345 before 15:30. "
    )
    prose = (sentence * (1_000_000 // len(sentence) + 1))[:1_000_000]
    for text in (prose, "a" * 1_000_000, "1" * 1_000_000, "5 " * 500_000, "4111 1 " * 140_000):
        scan = _CardNumberScan(text)
        scan.finds_one()
        # Bounded work, counted rather than timed: tests never assert timings.
        assert scan.luhn_checks <= MAX_LUHN_CHECKS
        assert scan.value_search_characters <= MAX_VALUE_SEARCH_CHARACTERS + 2 * 64 + 10_000
    assert not contains_card_number(prose)
    assert not contains_card_number("1" * 1_000_000)  # one group: no window at all
    assert contains_card_number("5 " * 500_000)  # past the caps: refused (fail closed)


# ---------------------------------------------------------------- control characters


@pytest.mark.parametrize(
    "char",
    [
        "\x00", "\r", "\n", "\t", "\x0b", "\x1b", "\x7f",  # C0 controls and DEL
        "\x85", "\x9b",  # C1 controls
        "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",  # bidi embeddings and overrides
        "\u2066", "\u2067", "\u2068", "\u2069",  # bidi isolates
        "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff",  # zero-width characters
        "\u00ad", "\U000e0041",  # soft hyphen, a tag character: other invisible formats
        "\ud800", chr(0xDFFF),  # lone surrogates, as a JSON \\u escape can carry them
        "\ufdd0", "\ufffe", "\uffff", "\U0010ffff",  # noncharacters
        "\u2028", "\u2029",  # line and paragraph separators end lines as LF does
    ],
)  # fmt: skip
def test_control_characters_of_every_kind_are_refused(char: str) -> None:
    with pytest.raises(ValueError, match=CONTROL_CHARACTERS_MESSAGE):
        refuse_control_characters(f"Acme{char}Ltd")
    with pytest.raises(ValidationError) as refused:
        _Note(text=f"Acme{char}Ltd")
    if not 0xD800 <= ord(char) <= 0xDFFF:  # pydantic itself refuses a lone surrogate first
        assert _messages(refused.value) == [f"Value error, {CONTROL_CHARACTERS_MESSAGE}"]


@pytest.mark.parametrize(
    "text",
    [
        "Société Générale",
        "Anne-Marie O'Neil",
        "山田太郎",
        "محمد\u200f",  # a right-to-left mark is allowed: it cannot hide anything
        "Café ☕ 👩 Paris",
        "12\u00a0345,67 €",
        "Line one; line two",
    ],
)
def test_ordinary_text_is_accepted(text: str) -> None:
    assert refuse_control_characters(text) == text
    assert _Note(text=text).text == text


# ---------------------------------------------------------------- the input types


def test_safe_text_holds_at_most_2000_characters_and_says_so_in_its_schema() -> None:
    assert _Note(text="a" * SAFE_TEXT_MAX_LENGTH).text
    with pytest.raises(ValidationError, match="at most 2000 characters"):
        _Note(text="a" * (SAFE_TEXT_MAX_LENGTH + 1))
    assert _Note.model_json_schema()["properties"]["text"]["maxLength"] == SAFE_TEXT_MAX_LENGTH


def test_the_schema_pattern_names_exactly_the_refused_control_characters() -> None:
    surrogates = set(range(0xD800, 0xE000))  # not characters: no schema pattern can name them
    refused = {cp for cp in range(sys.maxunicode + 1) if _is_control_character(chr(cp))}
    assert surrogates <= refused
    refused -= surrogates
    in_pattern = {
        cp for cp in range(sys.maxunicode + 1) if re.match(f"[{CONTROL_CHARACTER_CLASS}]", chr(cp))
    }
    assert in_pattern == refused


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20))
def test_the_schema_patterns_accept_what_the_types_accept(text: str) -> None:
    """What the OpenAPI document promises (pattern) is what the validators do."""
    try:
        refuse_control_characters(text)
        accepted = True
    except ValueError:
        accepted = False
    assert bool(re.fullmatch(NO_CONTROL_CHARACTERS_PATTERN, text)) == accepted
    assert bool(re.fullmatch(NOT_BLANK_PATTERN, text)) == (accepted and bool(text.strip()))


def test_every_text_type_documents_its_pattern() -> None:
    class Form(BaseModel):
        note: SafeText
        name: Name
        reference: Reference
        description: Description

    properties = Form.model_json_schema()["properties"]
    assert properties["note"]["pattern"] == NO_CONTROL_CHARACTERS_PATTERN
    for blank_refused in ("name", "reference", "description"):
        assert properties[blank_refused]["pattern"] == NOT_BLANK_PATTERN


def test_a_name_is_stripped_and_must_not_be_blank() -> None:
    assert _Customer(name="  Alice Martin ", email="alice@example.com").name == "Alice Martin"
    for blank in ["", "   ", "\u00a0\u3000"]:
        with pytest.raises(ValidationError):
            _Customer(name=blank, email="alice@example.com")
    with pytest.raises(ValidationError) as refused:
        _Customer(name="   ", email="alice@example.com")
    assert _messages(refused.value) == [f"Value error, {BLANK_MESSAGE}"]


def test_a_name_with_a_trailing_line_break_is_refused_not_silently_stripped() -> None:
    with pytest.raises(ValidationError) as refused:
        _Customer(name="Alice\r\n", email="alice@example.com")
    assert _messages(refused.value) == [f"Value error, {CONTROL_CHARACTERS_MESSAGE}"]


def test_names_and_references_hold_at_most_200_characters() -> None:
    longest = "a" * SHORT_TEXT_MAX_LENGTH
    customer = _Customer(name=longest, email="a@example.com", reference=longest)
    assert customer.name == customer.reference == longest
    for field in ("name", "reference"):
        fields = {"name": "Alice", "email": "a@example.com", field: longest + "a"}
        with pytest.raises(ValidationError, match="at most 200 characters"):
            _Customer(**fields)
    schema = _Customer.model_json_schema()["properties"]
    assert schema["name"]["maxLength"] == SHORT_TEXT_MAX_LENGTH


def test_a_reference_is_stripped_and_must_not_be_blank() -> None:
    assert (
        _Customer(name="A", email="a@example.com", reference=" TCK-1234 ").reference == "TCK-1234"
    )
    with pytest.raises(ValidationError):
        _Customer(name="A", email="a@example.com", reference="  ")


@pytest.mark.clause("NO-PAN")
def test_no_pan_a_name_or_reference_holding_a_card_number_is_refused() -> None:
    for fields in (
        {"name": f"Alice {VISA}", "email": "a@example.com"},
        {"name": "Alice", "email": "a@example.com", "reference": "4111 1111 1111 1111"},
    ):
        with pytest.raises(ValidationError) as refused:
            _Customer(**fields)
        assert _messages(refused.value) == [f"Value error, {CARD_NUMBER_MESSAGE}"]
        assert VISA not in str(refused.value)


def test_an_email_address_is_read_as_email_str_reads_it_with_its_domain_lowercased() -> None:
    assert _Customer(name="A", email="Alice.Martin@Example.COM").email == "Alice.Martin@example.com"
    for invalid in ["not-an-email", "alice@", "@example.com", "alice@@example.com"]:
        with pytest.raises(ValidationError, match="not a valid email address"):
            _Customer(name="A", email=invalid)
    schema = _Customer.model_json_schema()["properties"]["email"]
    assert schema["format"] == "email"
    assert schema["maxLength"] == EMAIL_MAX_LENGTH


def test_an_email_address_is_at_most_254_characters() -> None:
    longest = f"{'a' * 64}@{'b' * 60}.{'c' * 60}.{'d' * 63}.com"
    assert len(longest) == EMAIL_MAX_LENGTH
    assert _Customer(name="A", email=longest).email == longest
    with pytest.raises(ValidationError, match="at most 254 characters"):
        _Customer(name="A", email="e" + longest)


@pytest.mark.clause("NO-PAN")
def test_no_pan_a_card_number_as_the_local_part_of_an_email_gets_the_no_pan_message() -> None:
    for email in (f"{VISA}@example.com", "4111.1111.1111.1111@example.com"):
        with pytest.raises(ValidationError) as refused:
            _Customer(name="A", email=email)
        assert _messages(refused.value) == [f"Value error, {CARD_NUMBER_MESSAGE}"]
        assert VISA not in str(refused.value)


def test_an_email_address_with_a_control_character_is_refused_as_such() -> None:
    with pytest.raises(ValidationError) as refused:
        _Customer(name="A", email="alice@example.com\r\nBcc: eve@example.com")
    assert _messages(refused.value) == [f"Value error, {CONTROL_CHARACTERS_MESSAGE}"]


@pytest.mark.clause("NO-PAN")
def test_no_pan_the_refusal_message_never_holds_the_value() -> None:
    with pytest.raises(ValueError, match="payment gateway") as refused:
        refuse_card_numbers(f"pay with {VISA}")
    assert VISA not in str(refused.value)
    assert not any(char.isdigit() for char in CARD_NUMBER_MESSAGE)


# ---------------------------------------------------------------- whole documents


@pytest.mark.clause("NO-PAN")
def test_no_pan_the_path_of_a_card_number_in_a_request_body_is_named() -> None:
    body = {
        "customer": {"name": "Alice", "email": "alice@example.com"},
        "lines": [
            {"description": "Consulting, January 2024", "amount": "1200.00"},
            {"description": "card 4111 1111 1111 1111 please", "amount": "10.00"},
        ],
    }
    assert find_card_number_path(body) == "lines.1.description"
    assert find_card_number_path(body, "body") == "body.lines.1.description"
    body["lines"][1]["description"] = "Support"  # type: ignore[index]
    assert find_card_number_path(body) is None


@pytest.mark.clause("NO-PAN")
def test_no_pan_a_card_number_sent_as_a_json_number_is_found() -> None:
    assert find_card_number_path(json.loads('{"note": 4111111111111111}')) == "note"
    assert find_card_number_path({"note": 4111111111111111.0}) == "note"
    document = json.loads('{"note": [1, 4.111111111111111e15]}', parse_float=Decimal)
    assert find_card_number_path(document) == "note.1"
    assert find_card_number_path({"huge": Decimal("1E+999999999"), "flag": True}) is None


@pytest.mark.clause("NO-PAN")
def test_no_pan_a_card_number_in_an_object_key_is_found_without_being_named() -> None:
    assert find_card_number_path({"meta": {VISA: "x"}}) == "meta.<key>"


@pytest.mark.clause("NO-PAN")
def test_no_pan_query_strings_and_headers_are_documents_too() -> None:
    query = {"q": ["invoices", "4111-1111-1111-1111"], "page": "2"}
    assert find_card_number_path(query, "query") == "query.q.1"
    assert find_card_number_path("4111111111111111") == ""
    assert find_card_number_path({"x-note": "order 12345"}, "headers") is None


def test_a_deeply_nested_document_is_walked_without_recursion() -> None:
    document: Any = VISA
    for _ in range(10_000):
        document = [document]
    assert find_card_number_path(document) == ".".join(["0"] * 10_000)
