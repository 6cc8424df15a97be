"""strftime and mktime as emscripten's JS library (what ao-loader runs) computes them, for a UTC host.

Lua's os.date calls strftime once per conversion; any difference in the text changes heap layout, so
this follows the JS rules exactly, quirks included (%u/%w unpadded, %y from the decimal year string).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
MONTH_DAYS_REGULAR = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
MONTH_DAYS_LEAP = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
EPOCH = datetime.datetime(1970, 1, 1)

EXPANSIONS = {
    "%c": "%a %b %d %H:%M:%S %Y",
    "%D": "%m/%d/%y",
    "%F": "%Y-%m-%d",
    "%h": "%b",
    "%r": "%I:%M:%S %p",
    "%R": "%H:%M",
    "%T": "%H:%M:%S",
    "%x": "%m/%d/%y",
    "%X": "%H:%M:%S",
    "%Ec": "%c",
    "%EC": "%C",
    "%Ex": "%m/%d/%y",
    "%EX": "%H:%M:%S",
    "%Ey": "%y",
    "%EY": "%Y",
    "%Od": "%d",
    "%Oe": "%e",
    "%OH": "%H",
    "%OI": "%I",
    "%Om": "%m",
    "%OM": "%M",
    "%OS": "%S",
    "%Ou": "%u",
    "%OU": "%U",
    "%OV": "%V",
    "%Ow": "%w",
    "%OW": "%W",
    "%Oy": "%y",
}


@dataclass
class Tm:
    sec: int
    min: int
    hour: int
    mday: int
    mon: int
    year: int
    wday: int
    yday: int
    isdst: int = 0
    gmtoff: int = 0
    zone: str = ""


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _pad(value: object, digits: int, char: str = "0") -> str:
    return str(value).rjust(digits, char)


def _first_week_start(jan4: datetime.date) -> datetime.date:
    js_day = (jan4.weekday() + 1) % 7  # JS getDay(): Sunday = 0
    return jan4 - datetime.timedelta(days=(js_day - 1) % 7)


def _week_based_year(tm: Tm) -> int:
    this = datetime.date(tm.year + 1900, 1, 1) + datetime.timedelta(days=tm.yday)
    start_this = _first_week_start(datetime.date(this.year, 1, 4))
    start_next = _first_week_start(datetime.date(this.year + 1, 1, 4))
    if start_this <= this:
        return this.year + 1 if start_next <= this else this.year
    return this.year - 1


def _iso_week(tm: Tm) -> str:
    val = (tm.yday + 7 - (tm.wday + 6) % 7) // 7
    if (tm.wday + 371 - tm.yday - 2) % 7 <= 2:
        val += 1
    if not val:
        val = 52
        dec31 = (tm.wday + 7 - tm.yday - 1) % 7
        if dec31 == 4 or (dec31 == 5 and is_leap(tm.year % 400 - 1)):
            val += 1
    elif val == 53:
        jan1 = (tm.wday + 371 - tm.yday) % 7
        if jan1 != 4 and (jan1 != 3 or not is_leap(tm.year)):
            val = 1
    return _pad(val, 2)


def _zone_offset(tm: Tm) -> str:
    off = abs(tm.gmtoff) / 60
    off = off / 60 * 100 + off % 60
    text = ("0000" + (str(int(off)) if off == int(off) else str(off)))[-4:]
    return ("+" if tm.gmtoff >= 0 else "-") + text


def _hour12(tm: Tm) -> str:
    return _pad(12 if tm.hour == 0 else tm.hour - 12 if tm.hour > 12 else tm.hour, 2)


RULES = {
    "%a": lambda t: WEEKDAYS[t.wday][:3],
    "%A": lambda t: WEEKDAYS[t.wday],
    "%b": lambda t: MONTHS[t.mon][:3],
    "%B": lambda t: MONTHS[t.mon],
    "%C": lambda t: _pad((t.year + 1900) // 100, 2),
    "%d": lambda t: _pad(t.mday, 2),
    "%e": lambda t: _pad(t.mday, 2, " "),
    "%g": lambda t: str(_week_based_year(t))[2:],
    "%G": lambda t: str(_week_based_year(t)),
    "%H": lambda t: _pad(t.hour, 2),
    "%I": _hour12,
    "%j": lambda t: _pad(
        t.mday + sum((MONTH_DAYS_LEAP if is_leap(t.year + 1900) else MONTH_DAYS_REGULAR)[: max(t.mon, 0)]), 3
    ),
    "%m": lambda t: _pad(t.mon + 1, 2),
    "%M": lambda t: _pad(t.min, 2),
    "%n": lambda t: "\n",
    "%p": lambda t: "AM" if 0 <= t.hour < 12 else "PM",
    "%S": lambda t: _pad(t.sec, 2),
    "%t": lambda t: "\t",
    "%u": lambda t: str(t.wday or 7),
    "%U": lambda t: _pad((t.yday + 7 - t.wday) // 7, 2),
    "%V": _iso_week,
    "%w": lambda t: str(t.wday),
    "%W": lambda t: _pad((t.yday + 7 - (t.wday + 6) % 7) // 7, 2),
    "%y": lambda t: str(t.year + 1900)[2:],
    "%Y": lambda t: str(t.year + 1900),
    "%z": _zone_offset,
    "%Z": lambda t: t.zone,
}


def strftime(pattern: str, tm: Tm) -> str:
    for rule, expansion in EXPANSIONS.items():
        pattern = pattern.replace(rule, expansion)
    pattern = pattern.replace("%%", "\0\0")
    for rule, render in RULES.items():
        if rule in pattern:
            pattern = pattern.replace(rule, render(tm))
    return pattern.replace("\0\0", "%")


def normalize(year: int, mon: int, mday: int, hour: int, minute: int, sec: int) -> tuple[int, Tm]:
    """JS `new Date(y, m, d, h, mi, s)` in UTC: out-of-range fields carry over. → (epoch s, fields)."""
    year += mon // 12
    mon %= 12
    moment = datetime.datetime(year, mon + 1, 1) + datetime.timedelta(
        days=mday - 1, hours=hour, minutes=minute, seconds=sec
    )
    seconds = int((moment - EPOCH).total_seconds())
    yday = moment.timetuple().tm_yday - 1
    return seconds, Tm(
        moment.second,
        moment.minute,
        moment.hour,
        moment.day,
        moment.month - 1,
        moment.year - 1900,
        (moment.weekday() + 1) % 7,
        yday,
    )
