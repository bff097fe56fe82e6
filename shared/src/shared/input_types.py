"""Text input types that refuse control characters and payment card numbers (NO-PAN).

NO-PAN: "We never store payment card numbers; payments go through a payment gateway." Every text
field of every route uses one of the types below, and a middleware runs find_card_number_path on
every request body, query string and header, so a card number is refused in any layout, on any
route, by one mechanism. The refusal never repeats the number: the messages name none, and
pydantic's own copy of the input (`errors()[i]["input"]`, `str(ValidationError)`) stays out of
responses and logs (shared.http answers with field, message and code; shared.errors.describe
logs paths and messages; models can also set `hide_input_in_errors=True`).

How contains_card_number reads a text:

1. NFKC, then every Unicode decimal digit becomes its ASCII digit.
2. Valid IBANs (ISO 13616: known country, its length, mod-97 == 1) and phone numbers with a +
   that stand alone are masked as letters.
3. Digits joined by at most MAX_SEPARATOR_UNITS separator units form a sequence; letters end
   one. A group is a run of digits with no separator inside.
4. A window is a run of whole consecutive groups holding 13 to 19 digits. It is a card number
   when it starts with an issuer prefix (CARD_ISSUERS) and passes the Luhn check, unless each
   of its digits belongs to an ordinary value: a date, time, amount, UUID, phone number or a
   code led by letters such as INV-000042 (of the last two, which take any digits, one kind).
5. The work is capped; a text past a cap is refused (fail closed).

What it lets through, knowingly: digits parted by letters ("4111x1111..."), spelled out or
encoded; a card number glued to more digits ("41111111111111112030" is a 20-digit number); 13
to 15 digits written as a phone number after a + ("+378282246310005"); digits laid out as a
run of valid dates, times or amounts. Each takes intent, not a slip or a paste, and no text
filter can tell those from the values they imitate.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from string import ascii_uppercase
from typing import Annotated, Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError, core_schema

CONTROL_CHARACTERS_MESSAGE = "must not contain control characters"
CARD_NUMBER_MESSAGE = (
    "must not contain a payment card number; payments go through the payment gateway"
)
BLANK_MESSAGE = "must not be blank"

SAFE_TEXT_MAX_LENGTH = 2000
SHORT_TEXT_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 1000
EMAIL_MAX_LENGTH = 254  # RFC 5321: the longest address a mail server has to accept

# ---------------------------------------------------------------- card issuers


@dataclass(frozen=True)
class CardIssuer:
    """A card scheme: the issuer (IIN) prefix ranges its numbers start with, the lengths issued."""

    scheme: str
    prefix_ranges: tuple[tuple[int, int], ...]  # inclusive; both ends written with one width
    lengths: tuple[int, ...]


# The one table of issuer prefixes (ISO/IEC 7812 IIN ranges as the schemes publish them).
# A number counts with any of these prefixes at any length from 13 to 19, not only the lengths
# a scheme issues today: schemes lengthen their numbers (Visa to 19 digits; Mastercard added its
# 2-series in 2017), and refusing a number nobody issued costs less than storing one somebody
# did. `lengths` documents the schemes and drives the tests' card generator.
CARD_ISSUERS: tuple[CardIssuer, ...] = (
    CardIssuer("Visa", ((4, 4),), (13, 16, 19)),
    CardIssuer("Mastercard", ((51, 55), (2221, 2720)), (16,)),
    CardIssuer("American Express", ((34, 34), (37, 37)), (15,)),
    CardIssuer(
        "Discover", ((6011, 6011), (644, 649), (65, 65), (622126, 622925)), (16, 17, 18, 19)
    ),
    CardIssuer("Diners Club", ((300, 305), (36, 36), (38, 39)), (14, 15, 16, 17, 18, 19)),
    CardIssuer("JCB", ((3528, 3589),), (16, 17, 18, 19)),
    CardIssuer("UnionPay", ((62, 62), (81, 81)), (16, 17, 18, 19)),
    # Maestro also issues 12 digits: below the 13 looked at, as 12-digit order and phone
    # numbers are far too common to refuse.
    CardIssuer("Maestro", ((50, 50), (56, 69)), (13, 14, 15, 16, 17, 18, 19)),
    CardIssuer("Mir", ((2200, 2204),), (16, 17, 18, 19)),
    CardIssuer("RuPay", ((60, 60), (65, 65), (81, 82), (508, 508)), (16,)),
)

CARD_NUMBER_MIN_DIGITS = 13
CARD_NUMBER_MAX_DIGITS = 19

_ISSUER_PREFIXES = frozenset(
    str(prefix)
    for issuer in CARD_ISSUERS
    for first, last in issuer.prefix_ranges
    for prefix in range(first, last + 1)
)
_PREFIX_WIDTHS = tuple(sorted({len(prefix) for prefix in _ISSUER_PREFIXES}))
_PREFIX_FIRST_DIGITS = "".join(sorted({prefix[0] for prefix in _ISSUER_PREFIXES}))


def has_issuer_prefix(digits: str) -> bool:
    """Whether a string of ASCII digits starts with a prefix of CARD_ISSUERS."""
    return any(digits[:width] in _ISSUER_PREFIXES for width in _PREFIX_WIDTHS)


_DOUBLED = str.maketrans("0123456789", "0246813579")  # 2d, less 9 when that has two digits


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (digits: ASCII digits only)."""
    # From the right: the 1st, 3rd, 5th... digit counts as it is, the others doubled. The sum of
    # the ASCII codes is the sum of the digits plus 48 per digit.
    checked = digits[-1::-2] + digits[-2::-2].translate(_DOUBLED)
    return (sum(checked.encode()) - 48 * len(checked)) % 10 == 0


# ---------------------------------------------------------------- normalisation

_NON_ASCII_DIGIT = re.compile(r"[^\D0-9]")  # \d: every Unicode decimal digit (category Nd)
_DIGIT_ZEROS: list[int] = []  # the zero of each script whose digits have turned up so far
_ASCII_DIGITS: dict[int, str] = {}  # their digits, each mapped to its ASCII digit


def _to_ascii_digits(text: str) -> str:
    if _NON_ASCII_DIGIT.search(text) is None:
        return text
    position = 0
    unknown = _NON_ASCII_DIGIT
    while (digit := unknown.search(text, position)) is not None:
        # Unicode encodes each script's ten digits as consecutive code points from its zero.
        zero = ord(digit.group()) - unicodedata.decimal(digit.group())
        _DIGIT_ZEROS.append(zero)
        _ASCII_DIGITS.update({zero + value: str(value) for value in range(10)})
        known = "".join(f"{chr(zero)}-{chr(zero + 9)}" for zero in _DIGIT_ZEROS)
        unknown = re.compile(rf"[^\D0-9{known}]")
        position = digit.start()
    return text.translate(_ASCII_DIGITS)


def _normalise(text: str) -> str:
    if text.isascii():
        return text
    # NFKC turns fullwidth, superscript and circled digits into ASCII ones; the digits of other
    # scripts (Arabic-Indic, Devanagari...) keep their code points and are translated after it.
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return _to_ascii_digits(text)


# ---------------------------------------------------------------- digit sequences

# Separator units allowed between two digits of one sequence. A unit is one visible punctuation
# or symbol character, or one run of whitespace of any length (tabs, line breaks, NBSP and the
# other Unicode spaces included); invisible characters count for nothing but still part groups.
# Four covers every way people set the groups of a number apart: "  ", " - ", " / ", ". ", a
# line break and an indent, " -- ". Values set further apart than that are separate values, and
# joining them would only make chance "card numbers" out of unrelated numbers.
MAX_SEPARATOR_UNITS = 4

# Characters that show nothing: C0/C1 controls other than whitespace, soft hyphen, zero-width
# and bidi format characters, combining marks, variation selectors, Hangul fillers, tags.
_INVISIBLE = (
    "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb"
    "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe00-\ufe0f\ufe20-\ufe2f"
    "\U000e0000-\U000e0fff"
)
_FILLER_LETTERS = "\u115f\u1160\u3164\uffa0"  # Hangul fillers: letters to Unicode, yet blank
# Between two digits of one sequence: invisible characters alone, or 1 to 4 units, each maybe
# followed by invisible characters. The possessive quantifiers (*+, ++) never give back what
# they took, so the engine has one way to read a gap and never backtracks into one.
_UNIT = rf"(?:\s++|[^\w\s{_INVISIBLE}]|_)"
_GAP = (
    rf"(?:[{_INVISIBLE}]*+(?:{_UNIT}[{_INVISIBLE}]*+){{1,{MAX_SEPARATOR_UNITS}}}"
    rf"|[{_INVISIBLE}]++)"
)
_DIGIT_SEQUENCE = re.compile(rf"[0-9]++(?:{_GAP}[0-9]++)*+")
_DIGIT_RUN = re.compile(r"[0-9]++")
_CONTINUES = re.compile(rf"{_GAP}[0-9]")  # the sequence goes on after this point
_SPLIT_GROUPS = re.compile(r"([^0-9]+)")
_DIGIT = re.compile(r"[0-9]")

# ---------------------------------------------------------------- IBANs and phone numbers

# ISO 13616 IBAN registry: the length of each country's IBAN.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
# Check digits after a country code (itself after no letter or digit), then the BBAN in one
# block or in groups of four. Starting with a digit lets the engine skip straight to digits.
_IBAN_FROM_CHECK_DIGITS = re.compile(
    r"[0-9](?<=[A-Za-z]{2}[0-9])(?<![0-9A-Za-z][A-Za-z]{2}[0-9])[0-9]"
    r"(?: ?[0-9A-Za-z]{4}){2,7}(?: ?[0-9A-Za-z]{1,4})?"
)
# The IBAN of one length: that many letters and digits, single spaces allowed between them.
_IBAN_OF_LENGTH = {
    length: re.compile(rf"[A-Za-z]{{2}}[0-9]{{2}}(?: ?[0-9A-Za-z]){{{length - 4}}}")
    for length in set(_IBAN_LENGTHS.values())
}
_LETTER_VALUES = str.maketrans({letter: str(ord(letter) - 55) for letter in ascii_uppercase})


def is_valid_iban(text: str) -> bool:
    """Whether text (spaces allowed) is an IBAN: known country, its length, mod-97 == 1."""
    compact = text.replace(" ", "").upper()
    if len(compact) != _IBAN_LENGTHS.get(compact[:2], 0):
        return False
    if not (compact.isascii() and compact.isalnum() and compact[2:4].isdigit()):
        return False
    return int((compact[4:] + compact[:4]).translate(_LETTER_VALUES)) % 97 == 1


def _iban_masked(candidate: re.Match[str]) -> str:
    text = candidate.string
    start = candidate.start() - 2  # the country code, two letters before the check digits
    length = _IBAN_LENGTHS.get(text[start : candidate.start()].upper())
    # The candidate may run on into the next word; the IBAN is its first `length` characters.
    iban = None if length is None else _IBAN_OF_LENGTH[length].match(text, start, candidate.end())
    if iban is None or not is_valid_iban(iban.group()):
        return candidate.group()
    return "X" + text[iban.end() : candidate.end()]


# E.164: a + and at most 15 digits, "+49 (0)151 2345 6789", "+1 555 123 4567".
_PHONE_DIGITS_AFTER_PLUS = r"[0-9](?:[ .\-/()]{0,3}[0-9]){6,14}(?![0-9])"
_INTERNATIONAL_PHONE = re.compile(rf"\+(?<![\w+]\+){_PHONE_DIGITS_AFTER_PLUS}")
# An international phone number that is a whole digit sequence by itself: its + comes after a
# letter (and at most two separators) or at the start, and no digit is joined after it.
_AFTER_LETTER = rf"[^\W\d_{_FILLER_LETTERS}]"
_STANDALONE_PHONE = re.compile(
    rf"\+(?:(?<={_AFTER_LETTER}\+)|(?<={_AFTER_LETTER}[^\w+]\+)|(?<={_AFTER_LETTER}[^\w+]{{2}}\+)"
    rf"|(?<=\A\+)|(?<=\A[^\w+]\+)|(?<=\A[^\w+]{{2}}\+))"
    rf"{_PHONE_DIGITS_AFTER_PLUS}(?!{_GAP}[0-9])"
)


def _mask_ibans_and_phones(text: str) -> str:
    # An IBAN's digits are an account number, not a card's. Masked as a letter, they end the
    # digit sequences around them, as the IBAN's own letters do. A phone number that stands
    # alone would only be excused window by window below; masking it decides the same, sooner.
    return _STANDALONE_PHONE.sub("X", _IBAN_FROM_CHECK_DIGITS.sub(_iban_masked, text))


# ---------------------------------------------------------------- ordinary values

# Values whose digits may add up to a Luhn-valid run with an issuer prefix by chance (a tenth of
# all digit runs pass Luhn). A window made only of their digits is excused; with one digit
# outside them the window counts, so a date or a phone number next to a card number hides
# nothing, and none of them can take in a card number written in groups of four.
_DAY = r"(?:0?[1-9]|[12][0-9]|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:19|20|21)[0-9]{2}"
# Every ordinary value is shorter than this: looking this far around a sequence of digits finds
# every one that touches it.
_VALUE_REACH = 64

# Phone numbers and codes take any digits, so together they could cover any card number: a
# window is excused with the digits of at most one of these kinds in it ("INV-4111 0111 1111
# 1111" is not a code and a phone number), and a phone number only when set apart from the
# digits before it by a comma, semicolon, bar or line break, or a dash or slash with space
# around it, as lists and ranges are written.
_PHONE, _CODE = "p", "c"
_ANY_DIGIT_KINDS = frozenset(_PHONE + _CODE)
_VALUE_SEPARATOR = re.compile(r"[,;|\n\r]|\s[-/\u2013\u2014]\s")


def _set_apart(region: str, start: int, region_starts_text: bool) -> bool:
    """Whether the value at region[start:] follows a letter, the start, or a value separator."""
    before = start
    while before > 0 and not region[before - 1].isalnum():
        before -= 1
    if before == 0:
        return region_starts_text  # else what came before the region is unknown: not apart
    return not region[before - 1].isdigit() or bool(_VALUE_SEPARATOR.search(region, before, start))


@dataclass(frozen=True)
class _OrdinaryValue:
    """A kind of value whose digits are not a card number's."""

    pattern: re.Pattern[str]
    # A pattern cannot count digits spread over groups: with max_digits, a match covers its
    # longest run of whole groups from the start that holds no more digits than that.
    max_digits: int | None = None
    # What the digits it covers are replaced by: "#" for values with a strict shape (a date has
    # a valid day, month and year), a letter of its own for each kind that takes any digits.
    mark: str = "#"

    def hide_digits(self, region: str, hidden: str, region_starts_text: bool) -> str:
        """hidden (a copy of region) with the digits of these values replaced by the mark."""
        marks = str.maketrans("0123456789", self.mark * 10)
        for value in self.pattern.finditer(region):
            start, end = value.start(), self._end(value)
            if self.mark != _PHONE or _set_apart(region, start, region_starts_text):
                hidden = hidden[:start] + hidden[start:end].translate(marks) + hidden[end:]
        return hidden

    def _end(self, value: re.Match[str]) -> int:
        if self.max_digits is None:
            return value.end()
        end, digits = value.start(), 0
        for group in _DIGIT_RUN.finditer(value.string, value.start(), value.end()):
            digits += len(group.group())
            if digits > self.max_digits:
                break
            end = group.end()
        return end


# Strict shapes first, then the kinds that take any digits; the search stops once a window's
# digits are all accounted for.
_ORDINARY_VALUES = (
    # dates with a four-digit year: 2024-01-31, 31/01/2024, 1.2.2024, 01/31/2024, 20240131
    _OrdinaryValue(
        re.compile(
            rf"(?<![0-9])(?:{_YEAR}(?P<a>[-./]){_MONTH}(?P=a){_DAY}"
            rf"|{_DAY}(?P<b>[-./]){_MONTH}(?P=b){_YEAR}"
            rf"|{_MONTH}(?P<c>[-./]){_DAY}(?P=c){_YEAR}"
            rf"|{_YEAR}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
            rf"|(?:0[1-9]|[12][0-9]|3[01])(?:0[1-9]|1[0-2]){_YEAR})(?![0-9])"
        )
    ),
    # a day of the month before a word, as in "2 January 2000" or "2. Januar": the digits
    # last in their sequence, which the word ends
    _OrdinaryValue(re.compile(rf"(?<![0-9]){_DAY}(?=\.?\s*[^\W\d_])")),
    # amounts, at most 12 integer digits: 1,234,567.89  1.234,50  1'234  12 345,67  1234.50
    _OrdinaryValue(
        re.compile(
            r"(?<![0-9])(?<![0-9][.,'])"
            r"(?:[0-9]{1,3}(?P<t>[,.'])[0-9]{3}(?:(?P=t)[0-9]{3}){0,2}(?:(?!(?P=t))[.,][0-9]{2})?"
            r"|[0-9]{1,3}(?: [0-9]{3}){1,3}[.,][0-9]{2}"
            r"|[0-9]{1,10}[.,][0-9]{2})(?![0-9])(?![.,'][0-9])"
        )
    ),
    # times, with seconds, fraction and UTC offset: 12:34, 23:59:59.123456+02:00
    _OrdinaryValue(
        re.compile(
            r"(?<![0-9])(?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]{1,6})?)?"
            r"(?:[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?(?![0-9])"
        )
    ),
    # North American phone numbers: (555) 123-4567, 1-800-555-0199
    _OrdinaryValue(
        re.compile(
            r"(?<![\w+])(?:1[ .\-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .\-])"
            r"[0-9]{3}[ .\-][0-9]{4}(?![0-9])"
        )
    ),
    # UUIDs
    _OrdinaryValue(
        re.compile(
            r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}(?![0-9A-Za-z])"
        )
    ),
    # international phone numbers next to other digits: "+49 151 23456789, 2024-01-31"
    _OrdinaryValue(_INTERNATIONAL_PHONE, mark=_PHONE),
    # national phone numbers, trunk prefix 0 and at most 13 digits: 0151 23456789, (030) 12-34;
    # the 0 leads, so the at most 11 digits after it can never be a whole card number
    _OrdinaryValue(
        re.compile(r"(?<![\w+])(?:\(0[0-9]{1,5}\)|0[0-9]{1,5})(?:[ .\-/]{1,2}[0-9]++){1,5}"),
        max_digits=13,
        mark=_PHONE,
    ),
    # codes led by two letters or more, at most 12 digits: INV-000042, PO#1234, Nr.42
    _OrdinaryValue(
        re.compile(r"(?<![^\W\d_])[^\W\d_]{2,}[-_/#.]?[0-9]{1,12}(?![0-9])"), mark=_CODE
    ),
)


class _OrdinaryDigits:
    """The digits around one sequence that belong to ordinary values, looked for when asked."""

    def __init__(self, text: str, start: int, end: int) -> None:
        self.start = start
        self.region = text[start:end]
        self.hidden = self.region  # the region, the digits of the values found so far hidden
        self.kinds_left = list(_ORDINARY_VALUES)
        self.starts_text = start == 0

    def cover(self, start: int, end: int, scan: _CardNumberScan) -> bool:
        """Whether every digit of text[start:end] belongs to an ordinary value."""
        start, end = start - self.start, end - self.start
        while _DIGIT.search(self.hidden, start, end):
            if not self.kinds_left:
                return False
            scan.spend_value_search(len(self.region))
            kind = self.kinds_left.pop(0)
            self.hidden = kind.hide_digits(self.region, self.hidden, self.starts_text)
        # Two kinds that take any digits excuse a window only when both are set apart from what
        # precedes them ("INV-228278, 00 04 000", two values of a list); run together they do not
        # ("INV-4111 0111 1111 1111" is not a code and a phone number).
        kinds = _ANY_DIGIT_KINDS.intersection(self.hidden[start:end])
        return len(kinds) <= 1 or bool(_VALUE_SEPARATOR.search(self.region, start, end))


# ---------------------------------------------------------------- card numbers


def _prefix_pattern(prefixes: set[str], gap: str) -> str:
    """A pattern for the start of any digit string that begins with one of prefixes."""
    if "" in prefixes:
        return ""  # a prefix ends here, whatever follows
    rests: dict[str, set[str]] = {}
    for prefix in prefixes:
        rests.setdefault(prefix[0], set()).add(prefix[1:])
    after = {digit: _prefix_pattern(rest, gap) for digit, rest in sorted(rests.items())}
    ending = "".join(digit for digit, pattern in after.items() if not pattern)
    if len(ending) == 10:
        return ""  # every next digit ends a prefix
    branches = [f"[{ending}]"] if ending else []
    branches += [f"{digit}{gap}{pattern}" for digit, pattern in after.items() if pattern]
    return f"(?:{'|'.join(branches)})"


# Where a window may start: a digit after no digit that begins an issuer prefix and is followed
# by 12 more digits with no letter between. Gaps are unbounded here, so this finds a superset of
# the windows in one pass of the regex engine, which skips straight to the candidates' first
# digits; Python sees only digit runs long enough to hold a card number.
_LOOSE_GAP = rf"[\W_{_FILLER_LETTERS}]"
_WINDOW_START = re.compile(
    rf"[{_PREFIX_FIRST_DIGITS}](?<![0-9][{_PREFIX_FIRST_DIGITS}])"
    rf"(?<=(?={_prefix_pattern(set(_ISSUER_PREFIXES), _LOOSE_GAP + '*+')}).)"
    rf"(?:[0-9]|{_LOOSE_GAP}++[0-9]){{{CARD_NUMBER_MIN_DIGITS - 1}}}"
)

# The work is capped, so that a megabyte of hostile text is answered in milliseconds, not after
# seconds. Past a cap the text is refused as holding a card number (fail closed): only a dump of
# numbers gets there, and a tenth of all windows pass Luhn, so it would almost surely hold a
# chance match anyway. A text field (SAFE_TEXT_MAX_LENGTH) cannot get near any cap.
MAX_SEQUENCE_CHARACTERS = 10_000  # one sequence of several groups
MAX_LUHN_CHECKS = 20_000  # windows checked in one text
MAX_VALUE_SEARCH_CHARACTERS = 200_000  # characters searched for ordinary values in one text


def _end_of(pattern: re.Pattern[str], text: str, start: int, end: int) -> int:
    """Where pattern, matched at text[start], ends (start itself when it does not match)."""
    match = pattern.match(text, start, end)
    return start if match is None else match.end()


class _OverBudget(Exception):
    """The text needs more work than the caps allow."""


class _CardNumberScan:
    """One search of a normalised text for card numbers, with its work budget."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.luhn_checks = 0
        self.value_search_characters = 0

    def finds_one(self) -> bool:
        """Whether the text holds a card number, or needs more work than the caps allow."""
        try:
            return self._finds_one()
        except _OverBudget:
            return True

    def spend_value_search(self, characters: int) -> None:
        self.value_search_characters += characters
        if self.value_search_characters > MAX_VALUE_SEARCH_CHARACTERS:
            raise _OverBudget

    def _finds_one(self) -> bool:
        text = self.text
        position = 0
        while (candidate := _WINDOW_START.search(text, position)) is not None:
            first = candidate.start()
            # The rest of the sequence from this candidate on holds every window after it.
            limit = min(len(text), first + MAX_SEQUENCE_CHARACTERS)
            position = _end_of(_DIGIT_SEQUENCE, text, first, limit)
            if text[position : position + 1].isdigit() or _CONTINUES.match(text, position):
                # The sequence runs on past the cap: refused, unless it is one long group of
                # digits, which holds no window at all.
                run_end = _end_of(_DIGIT_RUN, text, first, len(text))
                if run_end < position or _CONTINUES.match(text, run_end):
                    raise _OverBudget
                position = run_end
                continue
            if self._holds(first, position):
                return True
        return False

    def _holds(self, start: int, end: int) -> bool:
        """Whether the sequence text[start:end] holds a window that is a card number."""
        # Windows start and end at group boundaries. A person types a card number in one block
        # or in groups ("4111111111111111", "4111 1111 1111 1111"), so it starts and ends where
        # a group does, also next to other digits ("ref 12 4111...", "4111... 2030"). Windows
        # that start or end inside a group would find 13 to 19 digits cut out of any longer
        # number: a 20-digit reference holds 8 of them and would be refused half the time.
        text = self.text
        parts = _SPLIT_GROUPS.split(text[start:end])
        groups = parts[::2]
        bounds = list(accumulate(map(len, parts), initial=start))  # group i: 2i to 2i + 1
        digits_to = list(accumulate(map(len, groups)))  # digits in groups 0 to i
        ordinary: _OrdinaryDigits | None = None  # looked for at the first Luhn-valid window
        for first, head in enumerate(groups):
            if head[0] not in _PREFIX_FIRST_DIGITS:
                continue
            before = digits_to[first] - len(head)
            last = bisect_left(digits_to, before + CARD_NUMBER_MIN_DIGITS, first)
            if last == len(groups):
                return False  # the groups left hold fewer digits than a card number
            if digits_to[last] - before > CARD_NUMBER_MAX_DIGITS:
                continue
            digits = "".join(groups[first : last + 1])
            if not has_issuer_prefix(digits):
                continue
            while True:
                self.luhn_checks += 1
                if self.luhn_checks > MAX_LUHN_CHECKS:
                    raise _OverBudget
                if luhn_valid(digits):
                    if ordinary is None:
                        region = (max(0, start - _VALUE_REACH), end + _VALUE_REACH)
                        ordinary = _OrdinaryDigits(text, *region)
                    if not ordinary.cover(bounds[2 * first], bounds[2 * last + 1], self):
                        return True
                last += 1
                if last == len(groups) or digits_to[last] - before > CARD_NUMBER_MAX_DIGITS:
                    break
                digits += groups[last]
        return False


def contains_card_number(text: str) -> bool:
    """Whether text holds a payment card number in any layout (NO-PAN); see the module doc."""
    text = _normalise(text)
    if _WINDOW_START.search(text) is None:  # no digit run long enough: the common case
        return False
    return _CardNumberScan(_mask_ibans_and_phones(text)).finds_one()


# ---------------------------------------------------------------- refusals

# Format characters that right-to-left text legitimately holds and that cannot hide anything:
# the left-to-right, right-to-left and Arabic letter marks.
_ALLOWED_FORMAT_CHARACTERS = frozenset("\u200e\u200f\u061c")


def _is_noncharacter(code_point: int) -> bool:
    return 0xFDD0 <= code_point <= 0xFDEF or code_point & 0xFFFE == 0xFFFE


def _is_control_character(char: str) -> bool:
    category = unicodedata.category(char)
    if category in ("Cc", "Cs", "Zl", "Zp"):  # Zl, Zp: U+2028 and U+2029 end lines as LF does
        return True
    if category == "Cf":  # zero-width, bidi embeddings, overrides and isolates, tags...
        return char not in _ALLOWED_FORMAT_CHARACTERS
    return _is_noncharacter(ord(char))


# Where the characters _is_control_character refuses can be: the Basic and Supplementary
# Multilingual Planes and the tags (plane 14) hold every format and control character Unicode
# defines; the other planes hold only their two noncharacters each.
_PLANES_WITH_FORMAT_CHARACTERS = (range(0x20000), range(0xE0000, 0xE1000))


def _control_character_ranges() -> list[tuple[int, int]]:
    code_points = sorted(
        {
            cp
            for plane in _PLANES_WITH_FORMAT_CHARACTERS
            for cp in plane
            if _is_control_character(chr(cp))
        }
        | {plane + last for plane in range(0x20000, 0x110000, 0x10000) for last in (0xFFFE, 0xFFFF)}
    )
    ranges: list[tuple[int, int]] = []
    for cp in code_points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges


def _class_member(code_point: int) -> str:
    # \uXXXX reads the same in Python and ECMA-262 (JSON Schema) patterns; a code point past
    # the BMP goes in as itself, which Python reads as one character.
    return f"\\u{code_point:04x}" if code_point <= 0xFFFF else chr(code_point)


_SURROGATES = (0xD800, 0xDFFF)

# The control characters as a regex character class, in the validator and in the JSON Schema
# `pattern` of every text type, so the OpenAPI document says what the API refuses. Surrogates
# stay out of the pattern: they are not characters, JSON Schema's regex engines cannot name
# them, and only a hand-written "\\ud800" escape puts one in a string; the validator refuses it.
CONTROL_CHARACTER_CLASS = "".join(
    _class_member(first) if first == last else f"{_class_member(first)}-{_class_member(last)}"
    for first, last in _control_character_ranges()
    if (first, last) != _SURROGATES
)
_CONTROL_CHARACTER = re.compile(f"[{CONTROL_CHARACTER_CLASS}\\ud800-\\udfff]")
NO_CONTROL_CHARACTERS_PATTERN = f"^[^{CONTROL_CHARACTER_CLASS}]*$"
NOT_BLANK_PATTERN = (
    f"^[^{CONTROL_CHARACTER_CLASS}]*[^\\s{CONTROL_CHARACTER_CLASS}][^{CONTROL_CHARACTER_CLASS}]*$"
)


def refuse_control_characters(value: str) -> str:
    """Refuse control, invisible format, surrogate and noncharacter code points."""
    # A CR or LF would end up in a mail header and a NUL in the database; a bidi override or a
    # zero-width character hides or reorders what a reader sees. Printable text has none.
    if not value.isprintable() and _CONTROL_CHARACTER.search(value):
        raise ValueError(CONTROL_CHARACTERS_MESSAGE)
    return value


def refuse_card_numbers(value: str) -> str:
    """Refuse text that holds a payment card number (NO-PAN); the message never quotes it."""
    if contains_card_number(value):
        raise ValueError(CARD_NUMBER_MESSAGE)
    return value


def refuse_blank(value: str) -> str:
    """Strip surrounding whitespace and refuse what is left empty."""
    value = value.strip()
    if not value:
        raise ValueError(BLANK_MESSAGE)
    return value


def _any_case(word: str) -> str:
    return "".join(
        f"[{char}{char.upper()}]" if char.isalpha() else re.escape(char) for char in word
    )


# The documented form of a rule the validator applies: no mail goes to a special-use domain
# (.test, .invalid, .localhost...), so the schema says so and clients can check it first.
NOT_SPECIAL_USE_DOMAIN_PATTERN = (
    r"^[^@]*@(?!(?:[^@]*\.)?(?:"
    + "|".join(_any_case(name) for name in SPECIAL_USE_DOMAIN_NAMES)
    + r")\.?$)"
)


def _email_address(value: str) -> str:
    # pydantic's EmailStr: email-validator's syntax check and normalised form (domain lowercased).
    return validate_email(value)[1]


# Each type checks its length first, so the scans after it never see more than the field allows.
SafeText = Annotated[
    str,
    StringConstraints(max_length=SAFE_TEXT_MAX_LENGTH),
    Field(json_schema_extra={"pattern": NO_CONTROL_CHARACTERS_PATTERN}),
    AfterValidator(refuse_control_characters),
    AfterValidator(refuse_card_numbers),
]
"""Free text: no control characters, no card number (NO-PAN), at most 2000 characters."""

# Control characters are refused before stripping, so a trailing CR or TAB is refused, not hidden.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=SHORT_TEXT_MAX_LENGTH),
    Field(json_schema_extra={"pattern": NOT_BLANK_PATTERN}),
    AfterValidator(refuse_control_characters),
    AfterValidator(refuse_card_numbers),
    AfterValidator(refuse_blank),
]
"""A person's or company's name: SafeText, stripped, not blank, at most 200 characters."""

Reference = Name  # the same rules; the name says what the field holds
"""A short code or purpose text (a ticket reference): SafeText, stripped, not blank, max 200."""

Description = Annotated[
    str,
    StringConstraints(min_length=1, max_length=DESCRIPTION_MAX_LENGTH),
    Field(json_schema_extra={"pattern": NOT_BLANK_PATTERN}),
    AfterValidator(refuse_control_characters),
    AfterValidator(refuse_card_numbers),
    AfterValidator(refuse_blank),
]
"""A line of descriptive text (what is billed): SafeText, stripped, not blank, at most 1000."""

EmailAddress = Annotated[
    str,
    StringConstraints(max_length=EMAIL_MAX_LENGTH),
    AfterValidator(refuse_control_characters),
    # On the raw string, before parsing: a card number as local part gets the NO-PAN message.
    AfterValidator(refuse_card_numbers),
    AfterValidator(_email_address),
    Field(json_schema_extra={"format": "email", "pattern": NOT_SPECIAL_USE_DOMAIN_PATTERN}),
]
"""An email address as pydantic's EmailStr reads it (domain lowercased), with no card number."""

# ---------------------------------------------------------------- decimals

DECIMAL_STRING_MESSAGE = 'must be a decimal number written as a JSON string, such as "10.50"'
DECIMAL_OUTPUT_PATTERN = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"


@dataclass(frozen=True)
class DecimalString:
    """Metadata for a Decimal field that travels as a JSON string matching `pattern`.

    A JSON number is refused: binary floats lose cents ("0.1 + 0.2"), and a schema that says
    string must not take numbers. The pattern states the field's format and range in the OpenAPI
    document; the Field constraints after it (gt, le, decimal_places) enforce the same.
    """

    pattern: str
    example: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self._text, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        if handler.mode == "serialization":
            return {"type": "string", "pattern": DECIMAL_OUTPUT_PATTERN}
        return {"type": "string", "pattern": self.pattern, "examples": [self.example]}

    def _text(self, value: Any) -> Any:
        if isinstance(value, Decimal):
            return value  # built in Python, not read from JSON
        if not isinstance(value, str) or re.fullmatch(self.pattern, value) is None:
            raise PydanticCustomError("decimal_string", DECIMAL_STRING_MESSAGE)
        return value


DecimalOutput = Annotated[
    Decimal,
    WithJsonSchema({"type": "string", "pattern": DECIMAL_OUTPUT_PATTERN}, mode="serialization"),
]
"""A Decimal in a response: a JSON string of plain digits."""


# ---------------------------------------------------------------- documents

_PLAIN_DECIMAL_EXPONENT = 64  # wider than any card number, narrow enough to write out


def _number_text(value: int | float | Decimal) -> str:
    # In plain digits: a card number sent as a JSON number must not hide behind an exponent.
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal) and not (
        value.is_finite() and abs(value.adjusted()) <= _PLAIN_DECIMAL_EXPONENT
    ):
        return str(value)  # 1E+999999999 would write out a gigabyte of zeros
    return format(value, "f")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def find_card_number_path(document: Any, path: str = "") -> str | None:
    """The dotted path of the first value of a decoded JSON document holding a card number.

    Strings, numbers and object keys are checked; a key holding one is reported as `<key>` in
    its object's path, so the path never quotes a card number. "" is the document itself.
    """
    pending: list[tuple[str, Any]] = [(path, document)]
    while pending:  # a stack, not recursion: a document may nest deeper than Python recurses
        here, value = pending.pop()
        if isinstance(value, str):
            if contains_card_number(value):
                return here
        elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            if contains_card_number(_number_text(value)):
                return here
        elif isinstance(value, dict):
            children = []
            for key, child in value.items():
                if contains_card_number(str(key)):
                    return _join(here, "<key>")
                children.append((_join(here, str(key)), child))
            pending.extend(reversed(children))
        elif isinstance(value, list | tuple):
            pending.extend(reversed([(_join(here, str(i)), v) for i, v in enumerate(value)]))
    return None


def _whole_number_only(value: Any) -> Any:
    # JSON Schema's integer takes 14.0 but not true or "14"; Pydantic's lax int takes all three.
    if isinstance(value, bool | str | bytes):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


# After an int's own constraints (Field(ge=..., le=...) before it), so the schema shows them.
WHOLE_NUMBER_ONLY = BeforeValidator(_whole_number_only)

TaxId = Annotated[
    str,
    Field(
        pattern="^[A-Za-z0-9][A-Za-z0-9 ./-]{0,38}[A-Za-z0-9]$",
        description="Tax or VAT identification number, such as FR40303265045.",
    ),
    AfterValidator(refuse_card_numbers),
]
"""A tax or VAT identification number: letters, digits, spaces, dots, slashes and dashes."""


def _iso_date_only(value: Any) -> Any:
    # Pydantic's lax date takes 0 or "1700000000" as a Unix time; the schema says YYYY-MM-DD.
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise PydanticCustomError("date_type", "Input should be a date as YYYY-MM-DD")
    return value


ISO_DATE_ONLY = BeforeValidator(_iso_date_only)
"""On a date: only a YYYY-MM-DD string, as JSON Schema's date format means."""
