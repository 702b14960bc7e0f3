"""The yfinance source, driven through yfinance's real request and parsing code.

Yahoo is never contacted: a curl_cffi Session subclass (the session type yfinance accepts)
answers each request with a recorded Yahoo response from tests/fixtures/yahoo/, so
``yf.download`` / ``Ticker.info`` parse real-shaped v8 chart and quoteSummary JSON. An
autouse guard makes any socket, DNS or libcurl connection attempt fail the test.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import curl_cffi.curl
import pandas as pd
import pytest
from curl_cffi import requests as curl_requests
from curl_cffi.requests.exceptions import DNSError
from prometheus_client import REGISTRY
from yfinance import cache as yf_cache
from yfinance.data import YfData
from yfinance.exceptions import YFRateLimitError

from stockpipe.common.errors import TransientError
from stockpipe.common.messages import Bar
from stockpipe.producer.sources import FLUSH, yahoo
from stockpipe.producer.sources.yahoo import YahooSource, YahooUnavailable, client, frame_to_bars

# yfinance 1.7 still passes inplace=True to pandas 3, which warns on every call.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "yahoo"
LOGGER = "stockpipe.producer.sources.yahoo"  # the parent of every module of the source

# Recorded chart answers per (symbol, interval); the 1d recordings also answer yfinance's
# time-zone lookup (range=1d&interval=1d), of which it reads only meta.exchangeTimezoneName.
CHARTS = {
    ("AAPL", "1m"): "chart_AAPL_1m.json",
    ("MSFT", "1m"): "chart_MSFT_1m.json",
    ("AAPL", "1d"): "chart_AAPL_1d.json",
    ("MSFT", "1d"): "chart_MSFT_1d.json",
}


def at(hhmmss: str, day: str = "2024-05-16") -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmmss}+00:00")


# Golden values: the numbers typed into chart_AAPL_1m.json / chart_MSFT_1m.json (Yahoo's
# float32-looking doubles, which must come through unrounded), for a poll at 13:37:25Z.
# Left out on purpose: AAPL 13:33 and MSFT 13:32 (null minutes), MSFT 13:35 (high < low,
# bad data), 13:37 of both (still forming; MSFT's also has Yahoo's live tick merged in).
GOLDEN_FIRST_POLL = [
    (at("13:30:00"), "AAPL", 189.50999450683594, 189.88999938964844, 189.27000427246094, 189.55999755859375, 1563871),
    (at("13:30:00"), "MSFT", 421.1000061035156, 421.6499938964844, 420.7900085449219, 421.3900146484375, 512334),
    (at("13:31:00"), "AAPL", 189.55499267578125, 189.6999969482422, 189.3000030517578, 189.3699951171875, 412306),
    (at("13:31:00"), "MSFT", 421.3699951171875, 421.489990234375, 421.0299987792969, 421.1300048828125, 143287),
    (at("13:32:00"), "AAPL", 189.36000061035156, 189.4600067138672, 189.1199951171875, 189.42999267578125, 386211),
    (at("13:33:00"), "MSFT", 421.1300048828125, 421.3599853515625, 420.9800109863281, 421.2799987792969, 120665),
    (at("13:34:00"), "AAPL", 189.42999267578125, 189.58999633789062, 189.38999938964844, 189.5, 298754),
    (at("13:34:00"), "MSFT", 421.2799987792969, 421.4100036621094, 421.1600036621094, 421.3399963378906, 98721),
    (at("13:35:00"), "AAPL", 189.4949951171875, 189.60000610351562, 189.4199981689453, 189.5800018310547, 244198),
    (at("13:36:00"), "AAPL", 189.5850067138672, 189.72999572753906, 189.55999755859375, 189.6999969482422, 267035),
    (at("13:36:00"), "MSFT", 421.2900085449219, 421.44000244140625, 421.2300109863281, 421.3800048828125, 87410),
]

# chart_AAPL_1m_later.json, polled at 13:39:30Z: 13:37 is now final (its values changed
# since the first recording) and 13:38 closed; 13:39 is forming.
GOLDEN_AFTER_RESTART = [
    (at("13:37:00"), "AAPL", 189.6999969482422, 189.77999877929688, 189.63999938964844, 189.75, 301876),
    (at("13:38:00"), "AAPL", 189.75, 189.8300018310547, 189.7100067138672, 189.80999755859375, 255310),
]

# chart_AAPL_1d.json backfilled at 13:39:30Z on 2024-05-16: daily bars start 00:00Z of the
# trading date; the 16th is still forming.
GOLDEN_DAILY = [
    (at("00:00:00", "2024-05-10"), "AAPL", 184.89999389648438, 185.08999633789062, 182.1300048828125,
     183.0500030517578, 50759500),
    (at("00:00:00", "2024-05-13"), "AAPL", 185.44000244140625, 187.10000610351562, 184.6199951171875,
     186.27999877929688, 72044800),
    (at("00:00:00", "2024-05-14"), "AAPL", 187.50999450683594, 188.3000030517578, 186.2899932861328,
     187.42999267578125, 52393600),
    (at("00:00:00", "2024-05-15"), "AAPL", 187.91000366210938, 190.64999389648438, 187.3699951171875,
     189.72000122070312, 70400000),
]


def rows(bars: list[Bar]) -> list[tuple]:
    return [(b.ts, b.symbol, b.open, b.high, b.low, b.close, b.volume) for b in bars]


# --------------------------------------------------------------------------- test doubles


class FakeYahoo(curl_requests.Session):
    """Answers yfinance's requests with recorded Yahoo responses.

    ``mode``: "ok"; "rate_limited" (every query1/query2 request gets Yahoo's 429 page);
    "offline" (every request fails as curl does without DNS); "hang" (no answer until
    ``release`` is set).
    """

    def __init__(self, charts: dict[tuple[str, str], str] | None = None) -> None:
        super().__init__()
        self.charts = dict(CHARTS if charts is None else charts)
        self.mode = "ok"
        self.limited: set[str] = set()  # symbols whose chart requests get Yahoo's 429
        self.calls: list[tuple[str, str, dict]] = []
        self.statuses: list[int] = []
        self.release = threading.Event()

    def request(self, method, url, params=None, **kwargs):
        self.calls.append((method, url, dict(params or {})))
        if self.mode == "offline":
            raise DNSError("Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com", 6)
        if self.mode == "hang":
            self.release.wait(10)
            raise DNSError("Failed to perform, curl: (28) Resolving timed out", 28)
        parts = urlsplit(url)
        host, path = parts.hostname or "", parts.path
        if self.mode == "rate_limited" and host.startswith("query"):
            return self._answer(url, 429, "too_many_requests.txt", "text/plain")
        if path.endswith("/v1/test/getcrumb"):
            return self._answer(url, 200, "getcrumb.txt", "text/plain;charset=utf-8")
        if path.startswith("/v8/finance/chart/") and path.rsplit("/", 1)[1] in self.limited:
            return self._answer(url, 429, "too_many_requests.txt", "text/plain")
        if path.startswith("/v8/finance/chart/"):
            name = self.charts.get((path.rsplit("/", 1)[1], params["interval"]))
            return self._answer(url, 200, name) if name else self._answer(url, 404, "chart_not_found.json")
        if path.startswith("/v10/finance/quoteSummary/"):
            name = f"quoteSummary_{path.rsplit('/', 1)[1]}.json"
            return self._answer(url, 200, name) if (FIXTURES / name).exists() else \
                self._answer(url, 404, "quoteSummary_not_found.json")
        if path.startswith("/v7/finance/quote"):
            name = f"quote_{params['symbols']}.json"
            return self._answer(url, 200, name) if (FIXTURES / name).exists() else \
                self._answer(url, 200, body=b'{"quoteResponse":{"result":[],"error":null}}')
        if path.startswith("/ws/fundamentals-timeseries/"):
            name = f"timeseries_{path.rsplit('/', 1)[1]}.json"
            return self._answer(url, 200, name) if (FIXTURES / name).exists() else \
                self._answer(url, 200, body=b'{"timeseries":{"result":[],"error":null}}')
        # fc.yahoo.com (cookie) and the consent pages: Yahoo answers 404 there too.
        return self._answer(url, 404, body=b"<html><body>Not Found</body></html>", content_type="text/html")

    @staticmethod
    def _answer_raw(url, status, fixture=None, content_type="application/json;charset=utf-8", body=None):
        response = curl_requests.Response()
        response.url, response.status_code, response.ok = url, status, status < 400
        response.reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests"}[status]
        response.content = body if body is not None else (FIXTURES / fixture).read_bytes()
        response.headers["Content-Type"] = content_type
        return response

    def _answer(self, url, status, fixture=None, content_type="application/json;charset=utf-8", body=None):
        self.statuses.append(status)
        return self._answer_raw(url, status, fixture, content_type, body)

    def chart_calls(self, interval: str) -> list[tuple[str, dict]]:
        return [(url.rsplit("/", 1)[1], p) for _, url, p in self.calls
                if "/v8/finance/chart/" in url and p.get("interval") == interval]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeStop(threading.Event):
    """A stop event whose waits return at once, advance ``clock`` and are recorded.

    The ``max_waits``-th wait sets the event, which ends the source's loop.
    """

    def __init__(self, clock: Clock | None = None, max_waits: int = 1) -> None:
        super().__init__()
        self.clock, self.max_waits = clock, max_waits
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if self.clock is not None and timeout:
            self.clock.advance(timeout)
        if len(self.waits) >= self.max_waits:
            self.set()
        return self.is_set()


def counting(download, before_call=None):
    """Wrap a download callable: counts calls, runs ``before_call(n)`` before the n-th (1-based)."""

    def wrapper(tickers, interval, **window):
        wrapper.calls += 1
        if before_call is not None:
            before_call(wrapper.calls)
        return download(tickers, interval, **window)

    wrapper.calls = 0
    return wrapper


def yf_on(fake: FakeYahoo, before_call=None, threads: bool = True):
    """The real yfinance download on the fake session, counted."""
    return counting(lambda t, i, **w: yahoo.yf_download(t, i, session=fake, threads=threads, **w), before_call)


def source_on(fake: FakeYahoo, tickers=("AAPL", "MSFT"), now="13:37:25", **kwargs):
    clock = kwargs.pop("clock", None) or Clock(at(now))
    download = kwargs.pop("download", None) or yf_on(fake)
    kwargs.setdefault("backoff_initial", 5.0)
    return YahooSource(list(tickers), download=download, clock=clock, **kwargs), clock, download


def drain(source, resume, stop):
    """What publish_bars does with a source: collect its bars; at each FLUSH (Kafka has
    acknowledged everything so far) the acknowledged bars advance ``resume``."""
    out, pending = [], {}
    for item in source.bars(resume, stop):
        if item is FLUSH:
            resume.update(pending)
            pending.clear()
            continue
        out.append(item)
        pending[(item.symbol, item.interval)] = item
    return out


def last_ts(resume):
    return {k: b.ts for k, b in resume.items()}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any real connection attempt (Python sockets, DNS, libcurl) fails the test."""
    attempts: list[str] = []

    def refuse(what):
        def blocked(*args, **kwargs):
            attempts.append(what)
            raise ConnectionRefusedError(f"network access blocked in unit tests ({what})")
        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    # curl_cffi connects from C (libcurl), below Python's socket module.
    monkeypatch.setattr(curl_cffi.curl.Curl, "perform", refuse("libcurl perform"))
    # Every test hands its session in explicitly; the real shared one must never be made.
    monkeypatch.setattr(client, "shared_session", refuse("yahoo.shared_session"))
    yield attempts
    assert not attempts, f"test tried to reach the network: {attempts}"


@pytest.fixture(autouse=True)
def fresh_yfinance(monkeypatch):
    """No on-disk yfinance caches, and no state carried over in its process-wide singleton."""
    monkeypatch.setattr(yf_cache._TzCacheManager, "_tz_cache", yf_cache._TzCacheDummy())
    monkeypatch.setattr(yf_cache._CookieCacheManager, "_Cookie_cache", yf_cache._CookieCacheDummy())
    monkeypatch.delitem(type(YfData)._instances, YfData, raising=False)
    YfData.cache_get.cache_clear()
    yield
    YfData.cache_get.cache_clear()


@pytest.fixture
def fake():
    session = FakeYahoo()
    yield session
    session.release.set()
    # A probe abandoned on a hanging request logs when it ends: let it, while logging still works.
    for thread in threading.enumerate():
        if thread.name == "yahoo-probe":
            thread.join(1.0)


# --------------------------------------------------------------------------- the guard itself


def test_network_guard_catches_python_sockets_and_libcurl(no_network):
    with pytest.raises(OSError):
        socket.create_connection(("query2.finance.yahoo.com", 443), timeout=1)
    with pytest.raises(OSError):
        curl_requests.Session().get("https://query2.finance.yahoo.com/v8/finance/chart/AAPL", timeout=1)
    assert "socket.getaddrinfo" in no_network and "libcurl perform" in no_network
    no_network.clear()


# --------------------------------------------------------------------------- live poll


def test_poll_through_yfinance_gives_golden_bars(fake, caplog):
    source, _, download = source_on(fake)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        bars, limited = source.poll({})
    assert rows(bars) == GOLDEN_FIRST_POLL and limited == set()
    assert all(b.interval == "1m" and b.source == "yfinance" and b.ts.tzinfo is UTC for b in bars)
    # One batched download per poll; yfinance makes one chart request per ticker in it.
    assert download.calls == 1
    # No bar of theirs on raw yet: the window starts YFINANCE_PERIOD (1d) before the poll.
    one_day_back = int(at("13:37:25", "2024-05-15").timestamp())
    assert sorted((s, p["period1"], p["interval"]) for s, p in fake.chart_calls("1m")) == [
        (s, one_day_back, "1m") for s in ("AAPL", "MSFT")]
    # MSFT 13:35 has high 420.10 < low 421.25 in the recording: dropped, counted, logged.
    assert source.stats.invalid_rows == 1
    assert [r.getMessage() for r in caplog.records if "invalid" in r.getMessage()] == [
        ("dropping invalid Yahoo row MSFT 1m 2024-05-16T13:35:00+00:00: inconsistent: high 420.1000061035156 is below "
         "max(open, close) (o=421.3399963378906 h=420.1000061035156 l=421.25 c=421.2900085449219 v=101532.0)")]


@pytest.mark.parametrize(
    ("now", "last_aapl", "msft_1337"),
    [
        ("13:37:25", at("13:36:00"), None),   # 13:37 forming: not emitted
        ("13:37:59.999999", at("13:36:00"), None),  # a microsecond before it closes
        ("13:38:00", at("13:37:00"), (421.3800048828125, 421.45001220703125, 421.3599853515625,
                                      421.4200134277344, 30218)),  # closed; MSFT's live tick merged by yfinance
    ],
)
def test_still_forming_minute_is_not_emitted(fake, now, last_aapl, msft_1337):
    frame = yahoo.yf_download(["AAPL", "MSFT"], "1m", period="1d", session=fake).frame
    bars, _ = frame_to_bars(frame, ["AAPL", "MSFT"], "1m", at(now))
    assert max(b.ts for b in bars if b.symbol == "AAPL") == last_aapl
    msft = [(b.open, b.high, b.low, b.close, b.volume) for b in bars if b.symbol == "MSFT" and b.ts == at("13:37:00")]
    assert msft == ([msft_1337] if msft_1337 else [])


def test_clock_is_read_before_the_download(fake):
    """A minute that closes while the request is in flight was fetched forming: not final."""
    clock = Clock(at("13:37:59"))

    def slow(tickers, interval, **window):
        clock.advance(16)  # the answer arrives at 13:38:15, after 13:37 closed (plus the grace)
        return yahoo.yf_download(tickers, interval, session=fake, **window)

    source, _, _ = source_on(fake, clock=clock, download=slow)
    assert max(b.ts for b in source.poll({})[0]) == at("13:36:00")


def test_resume_skips_bars_sent_before_a_restart(fake):
    first, clock, _ = source_on(fake, tickers=["AAPL"], poll_interval=60)
    resume: dict = {}
    sent = drain(first, resume, FakeStop(clock))
    assert [b.ts for b in sent] == [at(t) for t in ("13:30:00", "13:31:00", "13:32:00", "13:34:00", "13:35:00",
                                                      "13:36:00")]
    assert last_ts(resume) == {("AAPL", "1m"): at("13:36:00")}

    # Restart: a new process (new session, new source) with what it read back from raw.
    later = FakeYahoo({**CHARTS, ("AAPL", "1m"): "chart_AAPL_1m_later.json"})
    second, clock2, _ = source_on(later, tickers=["AAPL"], now="13:39:30", poll_interval=60)
    resumed = dict(resume)
    assert rows(drain(second, resumed, FakeStop(clock2))) == GOLDEN_AFTER_RESTART
    assert last_ts(resumed) == {("AAPL", "1m"): at("13:38:00")}


def test_next_poll_yields_only_new_bars(fake):
    def later_recording(n):
        if n == 2:
            fake.charts[("AAPL", "1m")] = "chart_AAPL_1m_later.json"

    source, clock, download = source_on(fake, tickers=["AAPL"], poll_interval=60,
                                        download=yf_on(fake, later_recording))
    stop = FakeStop(clock, max_waits=2)
    bars = drain(source, {}, stop)
    # Poll 2 runs at 13:38:10, just after 13:38 plus the grace: 13:37 is final (sent with its
    # final values), 13:38 is forming.
    assert rows(bars)[-2:] == [GOLDEN_FIRST_POLL[-2], GOLDEN_AFTER_RESTART[0]]
    assert len(bars) == len({b.ts for b in bars}) == 7  # nothing sent twice
    assert download.calls == 2 and stop.waits == [45.0, 60.0]  # polls at 13:38:10, 13:39:10


# --------------------------------------------------------------------------- frame_to_bars, pure

IDX = pd.DatetimeIndex(["2024-05-16 09:30", "2024-05-16 09:31"], tz="America/New_York")
GOOD = {"Open": [10.0, 10.5], "High": [11.0, 10.75], "Low": [9.5, 10.25], "Close": [10.5, 10.5],
        "Adj Close": [10.5, 10.5], "Volume": [1000, 2000]}
NOW = at("14:00:00")


def one_ticker(**second_row) -> pd.DataFrame:
    data = {k: [v[0], second_row.get(k.lower().replace(" ", "_"), v[1])] for k, v in GOOD.items()}
    return pd.DataFrame(data, index=IDX)


def by_ticker(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames.values(), axis=1, keys=frames.keys(), names=["Ticker", "Price"])


@pytest.mark.parametrize("layout", ["ticker_first", "field_first", "flat"])
def test_frame_layouts_give_the_same_bars(layout):
    frame = one_ticker()
    if layout == "ticker_first":
        frame = by_ticker({"ABC": frame})
    elif layout == "field_first":
        frame = by_ticker({"ABC": frame}).swaplevel(0, 1, axis=1)
    bars, invalid = frame_to_bars(frame, ["abc"], "1m", NOW)
    assert invalid == 0
    assert rows(bars) == [(at("13:30:00"), "ABC", 10.0, 11.0, 9.5, 10.5, 1000),
                          (at("13:31:00"), "ABC", 10.5, 10.75, 10.25, 10.5, 2000)]


@pytest.mark.parametrize(
    ("second_row", "kept", "invalid"),
    [
        ({}, 2, 0),
        ({"open": math.nan}, 1, 0),           # missing values: dropped, not counted
        ({"volume": math.nan}, 1, 0),
        ({"close": math.nan, "high": math.nan, "low": math.nan, "open": math.nan, "volume": math.nan}, 1, 0),
        ({"high": 10.0, "low": 10.6}, 1, 1),  # high < low: bad data, counted
        ({"low": 10.6}, 1, 1),                # low above open
        ({"high": 10.4}, 1, 1),               # high below close
        ({"open": 0.0, "low": 0.0}, 1, 1),    # a zero price
        ({"close": math.inf, "high": math.inf}, 1, 1),
        ({"volume": -5}, 1, 1),
        ({"volume": 12.5}, 1, 1),             # fractional shares: not rounded here
    ],
)
def test_rows_with_missing_or_invalid_values(second_row, kept, invalid, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        bars, counted = frame_to_bars(by_ticker({"ABC": one_ticker(**second_row)}), ["ABC"], "1m", NOW)
    assert (len(bars), counted) == (kept, invalid)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == invalid


def test_after_skips_sent_bars_and_does_not_revalidate_them(caplog):
    frame = by_ticker({"ABC": one_ticker(), "BAD": one_ticker(high=1.0)})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        bars, invalid = frame_to_bars(frame, ["ABC", "BAD"], "1m", NOW,
                                      after={"ABC": at("13:30:00"), "BAD": at("13:31:00")})
    assert [(b.symbol, b.ts) for b in bars] == [("ABC", at("13:31:00"))]
    assert invalid == 0 and not caplog.records


def test_daily_frames_with_naive_dates_are_utc_midnights():
    frame = pd.DataFrame(GOOD, index=pd.DatetimeIndex(["2024-05-14", "2024-05-15"]))
    bars, _ = frame_to_bars(frame, ["ABC"], "1d", at("23:59:59", "2024-05-15"))
    assert [b.ts for b in bars] == [at("00:00:00", "2024-05-14")]  # the 15th closes at midnight


def test_frame_to_bars_rejects_naive_now_and_empty_is_empty():
    with pytest.raises(ValueError):
        frame_to_bars(one_ticker(), ["ABC"], "1m", datetime(2024, 5, 16, 14))
    assert frame_to_bars(pd.DataFrame(), ["ABC"], "1m", NOW) == ([], 0)
    assert frame_to_bars(None, ["ABC"], "1m", NOW) == ([], 0)


# --------------------------------------------------------------------------- failures and backoff


def test_rate_limit_surfaces_as_yfratelimiterror(fake):
    fake.mode = "rate_limited"
    with pytest.raises(YFRateLimitError):
        yahoo.yf_download(["AAPL", "MSFT"], "1m", period="1d", session=fake)
    assert 429 in fake.statuses and 200 not in fake.statuses


def test_rate_limit_backs_off_then_recovers_without_raising(fake, caplog):
    def flip(n):
        fake.mode = "rate_limited" if n <= 2 else "ok"

    source, clock, _ = source_on(fake, poll_interval=60, download=yf_on(fake, flip))
    stop = FakeStop(clock, max_waits=3)
    before = {o: REGISTRY.get_sample_value("stockpipe_producer_yahoo_polls_total", {"outcome": o}) or 0
              for o in ("ok", "failed")}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        bars = drain(source, {}, stop)
    assert rows(bars) == GOLDEN_FIRST_POLL  # the clock moved on by the backoff; still the same closed bars
    for outcome, n in (("ok", 1), ("failed", 2)):  # exported for Prometheus
        assert REGISTRY.get_sample_value("stockpipe_producer_yahoo_polls_total", {"outcome": outcome}) == \
            before[outcome] + n
    first, second, between_polls = stop.waits
    assert 2.5 <= first <= 5.0 and 5.0 <= second <= 10.0 and 0 < between_polls <= 60.0
    warnings = [r.getMessage() for r in caplog.records if "poll failed" in r.getMessage()]
    assert len(warnings) == 2 and all("rate limited" in w for w in warnings)
    assert (source.stats.polls, source.stats.failures) == (3, 2)


def test_backoff_grows_to_its_cap_with_jitter():
    def down(tickers, interval, **window):
        raise ConnectionResetError("connection reset by peer")

    clock = Clock(at("13:37:25"))
    source = YahooSource(["AAPL"], download=down, clock=clock, backoff_initial=5.0, backoff_max=300.0)
    stop = FakeStop(clock, max_waits=10)
    assert list(source.bars({}, stop)) == []
    steps = [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]
    assert all(s / 2 <= w <= s for w, s in zip(stop.waits, steps, strict=True)), stop.waits
    assert len(set(stop.waits)) == len(stop.waits)  # jittered


@pytest.mark.parametrize("failure", ["offline", "premarket", "not_found"])
def test_network_error_and_empty_answers_back_off_then_recover(fake, failure, caplog):
    """Through yfinance: no DNS, an empty pre-market day, an unknown symbol (HTTP 404)."""
    def flip(n):
        if n == 1 and failure == "offline":
            fake.mode = "offline"
        elif n == 1 and failure == "premarket":
            fake.charts[("AAPL", "1m")] = "chart_AAPL_1m_premarket.json"
        elif n == 1:
            del fake.charts[("AAPL", "1m")]
        else:
            fake.mode = "ok"
            fake.charts[("AAPL", "1m")] = "chart_AAPL_1m.json"

    source, clock, _ = source_on(fake, tickers=["AAPL"], poll_interval=60, download=yf_on(fake, flip))
    stop = FakeStop(clock, max_waits=2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        bars = drain(source, {}, stop)
    assert len(bars) == 6 and 2.5 <= stop.waits[0] <= 5.0
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER)]
    assert len(warnings) == 1 and "empty result for AAPL" in warnings[0]
    if failure == "offline":
        assert any(url == "https://query2.finance.yahoo.com/v8/finance/chart/AAPL" for _, url, _ in fake.calls)


def test_yahoo_unavailable_is_a_transient_error():
    assert issubclass(YahooUnavailable, TransientError)


def test_empty_for_one_ticker_warns_once_and_keeps_the_others(fake, caplog):
    fake.charts.pop(("MSFT", "1m"))
    source, _, _ = source_on(fake)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        first, _ = source.poll({})
        second, _ = source.poll({})
    assert {b.symbol for b in first} == {"AAPL"} and len(first) == len(second) == 6
    assert [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER)] == [
        "Yahoo returned no data for MSFT (see the yfinance log for its reason)"]


@pytest.mark.parametrize("bug", [KeyError("Close"), TypeError("unsupported operand"), ValueError("bad frame")])
def test_a_bug_still_raises_out_of_the_loop(bug):
    def broken(tickers, interval, **window):
        raise bug

    source = YahooSource(["AAPL"], download=broken, clock=Clock(at("13:37:25")))
    with pytest.raises(type(bug)):
        list(source.bars({}, FakeStop(max_waits=5)))


@pytest.mark.parametrize("mode", ["ok", "rate_limited"])
def test_stop_ends_the_loop_promptly(fake, mode):
    """A real Event: waiting 60 s between polls (or 60 s of backoff) ends as soon as it is set."""
    fake.mode = mode
    source, _, _ = source_on(fake, tickers=["AAPL"], poll_interval=60, backoff_initial=120)
    stop = threading.Event()
    got: list[Bar] = []
    thread = threading.Thread(target=lambda: got.extend(b for b in source.bars({}, stop) if b is not FLUSH),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 1.5
    while source.stats.polls < 1 or (mode == "ok" and len(got) < 6):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.05)  # now inside stop.wait(...)
    t0 = time.monotonic()
    stop.set()
    thread.join(1.0)
    assert not thread.is_alive() and time.monotonic() - t0 < 0.5
    assert len(got) == (6 if mode == "ok" else 0)


# --------------------------------------------------------------------------- probe


@pytest.mark.parametrize(("mode", "expected"), [("ok", True), ("offline", False), ("rate_limited", False),
                                                ("hang", False)])
def test_probe_is_quick_and_bounded(fake, mode, expected):
    fake.mode = mode
    t0 = time.monotonic()
    assert yahoo.probe(0.3, session=fake) is expected
    assert time.monotonic() - t0 < 0.6
    assert fake.calls[0][1] == "https://query2.finance.yahoo.com/v8/finance/chart/AAPL"


# --------------------------------------------------------------------------- company profile


def test_fetch_company_parses_ticker_info(fake):
    assert yahoo.fetch_company("AAPL", session=fake) == {
        "name": "Apple Inc.", "sector": "Technology", "industry": "Consumer Electronics",
        "exchange": "NasdaqGS", "currency": "USD"}
    assert any("/v10/finance/quoteSummary/AAPL" in url for _, url, _ in fake.calls)


@pytest.mark.parametrize("mode", ["unknown_symbol", "rate_limited", "offline"])
def test_fetch_company_failures_give_none_and_a_warning(fake, mode, caplog):
    symbol = "NOPE" if mode == "unknown_symbol" else "AAPL"
    if mode != "unknown_symbol":
        fake.mode = mode
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert yahoo.fetch_company(symbol, session=fake) is None
    assert any(symbol in r.getMessage() for r in caplog.records if r.name.startswith(LOGGER))


# --------------------------------------------------------------------------- backfill


def test_backfill_one_download_per_ticker_closed_bars_only(fake, caplog):
    pulled: list[str] = []

    def tickers():
        for t in ("AAPL", "MSFT"):
            pulled.append(t)
            yield t

    stream = yahoo.backfill_bars(tickers(), "5d", "1d", session=fake, clock=Clock(at("13:39:30")),
                                 reachable=lambda: True)
    first = next(stream)
    assert pulled == ["AAPL"]  # lazily: a progress bar over tickers advances per ticker
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        bars = [first, *stream]
    assert rows(bars) == GOLDEN_DAILY  # MSFT's only bar (today) is still forming
    # One chart request per ticker (the range=1d ones are yfinance's time-zone lookups).
    assert [s for s, p in fake.chart_calls("1d") if p["range"] == "5d"] == ["AAPL", "MSFT"]
    assert any("no bars" in r.getMessage() and "MSFT" in r.getMessage() for r in caplog.records)


def test_backfill_retries_a_rate_limit_then_gives_up(fake):
    sleeps: list[float] = []
    calls = yf_on(fake, lambda n: setattr(fake, "mode", "rate_limited" if n == 1 else "ok"), threads=False)
    bars = list(yahoo.backfill_bars(["AAPL"], "5d", "1d", calls, clock=Clock(at("13:39:30")), sleep=sleeps.append,
                                    reachable=lambda: True))
    assert rows(bars) == GOLDEN_DAILY and len(sleeps) == 1 and 2.5 <= sleeps[0] <= 5.0

    fake.mode = "offline"
    sleeps.clear()
    def offline(t, i, **w):
        return yahoo.yf_download(t, i, session=fake, threads=False, **w)

    with pytest.raises(YahooUnavailable, match="gave up after 3 retries"):
        list(yahoo.backfill_bars(["AAPL"], "5d", "1d", offline, sleep=sleeps.append, reachable=lambda: False))
    assert len(sleeps) == 3


# --------------------------------------------------------------------------- issue 15: bars that are right


def minute_frame(symbol: str, first: datetime, minutes: int, *, extra: list[datetime] = (), tz: str = "UTC",
                 volume: float = 0.0) -> pd.DataFrame:
    """A yf.download-shaped frame of ``minutes`` 1m rows from ``first`` (plus ``extra`` rows,
    e.g. a live tick), each row's prices made from its minute so tests can tell them apart."""
    index = [first + timedelta(minutes=i) for i in range(minutes)] + list(extra)
    index.sort()
    price = [100.0 + (t - first).total_seconds() / 60 for t in index]
    data = {"Open": price, "High": [p + 0.5 for p in price], "Low": [p - 0.5 for p in price], "Close": price,
            "Adj Close": price, "Volume": [volume] * len(index)}
    frame = pd.DataFrame(data, index=pd.DatetimeIndex(index).tz_convert(tz))
    return by_ticker({symbol: frame})


class WindowedYahoo:
    """A download that serves ``frames`` the way Yahoo does: only rows in [start, now)."""

    def __init__(self, frames: dict[str, pd.DataFrame], clock: Clock) -> None:
        self.frames, self.clock = frames, clock
        self.requests: list[tuple[tuple[str, ...], datetime | None]] = []

    def __call__(self, tickers, interval, *, start=None, end=None, period=None):
        self.requests.append((tuple(tickers), start))
        now = pd.Timestamp(self.clock())
        parts = {}
        for t in tickers:
            frame = self.frames[t]
            idx = frame.index.tz_convert("UTC")
            keep = (idx < now) & ((idx >= pd.Timestamp(start)) if start is not None else True)
            parts[t] = frame[keep].xs(t, axis=1, level=0)
        return client.Fetched(by_ticker(parts))


def test_a_bar_is_final_only_after_the_grace_period():
    frame = minute_frame("ABC", at("13:30:00"), 8)
    for now, grace, last in [("13:37:05", 10, "13:35:00"), ("13:37:10", 10, "13:36:00"),
                             ("13:37:00", 0, "13:36:00"), ("13:37:59", 60, "13:35:00")]:
        bars, _ = frame_to_bars(frame, ["ABC"], "1m", at(now), grace=timedelta(seconds=grace))
        assert max(b.ts for b in bars) == at(last), (now, grace)


def test_polls_fall_just_after_each_interval_plus_the_grace():
    source = YahooSource(["AAPL"], grace=10, download=lambda *a, **k: None)
    assert source.next_poll(at("13:37:25")) == at("13:38:10")
    assert source.next_poll(at("13:38:09")) == at("13:38:10")
    assert source.next_poll(at("13:38:10")) == at("13:39:10")
    # POLL_INTERVAL=300 on 1m bars: every fifth boundary or so, still just after one.
    slow = YahooSource(["AAPL"], grace=10, poll_interval=300, download=lambda *a, **k: None)
    assert slow.next_poll(at("13:38:11"), last_start=at("13:38:10")) == at("13:42:10")
    daily = YahooSource(["AAPL"], interval="1d", grace=10, download=lambda *a, **k: None)
    assert daily.next_poll(at("13:38:10")) == at("00:00:10", "2024-05-17")


@pytest.mark.parametrize(("interval", "rows", "kept"), [
    ("1m", ["13:36:00", "13:37:00", "13:37:20"], ["13:36:00", "13:37:00"]),  # a live tick as its own row
    ("1m", ["13:36:00", "13:36:00.500"], ["13:36:00"]),
    ("5m", ["13:30:00", "13:35:00", "13:36:00"], ["13:30:00", "13:35:00"]),
    ("1h", ["13:30:00", "14:30:00", "14:47:13"], ["13:30:00", "14:30:00"]),  # hourly bars from the 09:30 open
    ("1d", ["00:00:00", "13:37:20"], ["00:00:00"]),
])
def test_rows_off_the_interval_grid_are_never_bars(interval, rows, kept):
    index = pd.DatetimeIndex([at(r) for r in rows])
    frame = pd.DataFrame({"Open": 10.0, "High": 11.0, "Low": 9.0, "Close": 10.5, "Volume": 100.0}, index=index)
    bars, invalid = frame_to_bars(by_ticker({"ABC": frame}), ["ABC"], interval, at("23:59:00", "2024-05-18"))
    assert [b.ts for b in bars] == [at(r) for r in kept] and invalid == 0


def test_a_live_tick_row_in_a_poll_is_not_published():
    clock = Clock(at("13:38:10"))
    frame = minute_frame("ABC", at("13:30:00"), 8, extra=[at("13:37:20")], tz="America/New_York")
    source = YahooSource(["ABC"], download=WindowedYahoo({"ABC": frame}, clock), clock=clock)
    bars, _ = source.poll({})
    assert [b.ts for b in bars] == [at("13:30:00") + timedelta(minutes=i) for i in range(8)]


def test_many_tickers_are_fetched_in_chunks_and_a_rate_limit_keeps_the_others(fake, caplog):
    """Through yfinance: MSFT is rate limited in the first poll; AAPL's rows are kept, MSFT
    alone is asked again after a backoff and its bars arrive then, once each."""
    fake.limited = {"MSFT"}
    source, clock, download = source_on(fake, chunk_size=1, poll_interval=60)

    def recover(n):
        if n == 3:  # the retry of MSFT alone
            fake.limited = set()

    source._download = yf_on(fake, recover)
    stop = FakeStop(clock, max_waits=2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        bars = drain(source, {}, stop)
    expected = [r for r in GOLDEN_FIRST_POLL if r[1] == "AAPL"]
    assert rows([b for b in bars if b.symbol == "AAPL"]) == expected  # poll 1: kept despite MSFT's 429
    msft = [b for b in bars if b.symbol == "MSFT"]
    assert [b.ts for b in msft] == sorted({b.ts for b in msft}) and len(msft) == 5  # after the retry, once each
    assert source._download.calls == 3  # chunk AAPL, chunk MSFT (429), then MSFT alone
    assert 2.5 <= stop.waits[0] <= 5.0  # the backoff before asking MSFT again
    assert any("rate limited MSFT" in r.getMessage() for r in caplog.records)


def test_partial_rate_limit_is_reported_per_ticker(fake):
    fake.limited = {"MSFT"}
    fetched = yahoo.yf_download(["AAPL", "MSFT"], "1m", period="1d", session=fake)
    assert fetched.limited == {"MSFT"}
    assert yahoo.frames.tickers_with_data(fetched.frame, ["AAPL", "MSFT"]) == {"AAPL"}


def test_a_slow_download_never_starves_the_liveness_beat():
    release = threading.Event()
    beats: list[float] = []

    def slow(tickers, interval, **window):
        release.wait(5)
        return client.Fetched(minute_frame("ABC", at("13:30:00"), 3))

    source = YahooSource(["ABC"], download=slow, clock=Clock(at("13:38:10")), beat=lambda: beats.append(1))
    threading.Timer(1.2, release.set).start()
    bars, _ = source.poll({})
    assert len(bars) == 3 and len(beats) >= 3  # a beat every 0.25 s while the download ran


def test_stop_during_a_hanging_download_ends_the_loop_promptly():
    hang = threading.Event()

    def forever(tickers, interval, **window):
        hang.wait(10)
        raise ConnectionResetError("gave up")

    source = YahooSource(["ABC"], download=forever, clock=Clock(at("13:38:10")))
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    assert list(source.bars({}, stop)) == []
    assert time.monotonic() - t0 < 1.0
    hang.set()


# --------------------------------------------------------------------------- crypto and FX across midnight


@pytest.mark.parametrize("symbol", ["BTC-USD", "EURUSD=X"])
def test_the_2359_bar_is_published_after_midnight(symbol):
    """24/7 and 24/5 symbols: the poll after midnight still asks from the last sent bar."""
    day1 = "2024-05-16"  # Thursday night into Friday: FX trades too
    clock = Clock(at("23:58:10", day1))
    frame = minute_frame(symbol, at("23:50:00", day1), 15)  # 23:50 .. 00:04; FX volume 0
    yahoo_like = WindowedYahoo({symbol: frame}, clock)
    source = YahooSource([symbol], download=yahoo_like, clock=clock, grace=10)
    resume: dict = {}
    stop = FakeStop(clock, max_waits=3)
    bars = drain(source, resume, stop)
    # Polls at 23:58:10, 23:59:10, 00:00:10: 23:50..23:57, then 23:58, then 23:59.
    assert [b.ts for b in bars] == [at("23:50:00", day1) + timedelta(minutes=i) for i in range(10)]
    assert bars[-1].ts == at("23:59:00", day1) and all(b.volume == 0 for b in bars)
    # The poll after midnight asked from the last acknowledged bar (23:58), not from 00:00.
    assert yahoo_like.requests[-1][1] == at("23:58:00", day1)
    assert last_ts(resume) == {(symbol, "1m"): at("23:59:00", day1)}


def test_the_poll_window_overlaps_the_oldest_last_bar_of_a_chunk():
    from stockpipe.producer.sources.yahoo.live import poll_window_start

    now = at("00:00:10", "2024-05-17")
    resume = {("BTC-USD", "1m"): Bar(symbol="BTC-USD", ts=at("23:58:00"), interval="1m", open=1.0, high=1.0,
                                     low=1.0, close=1.0, volume=0, source="yfinance"),
              ("ETH-USD", "1m"): Bar(symbol="ETH-USD", ts=at("23:59:00"), interval="1m", open=1.0, high=1.0,
                                     low=1.0, close=1.0, volume=0, source="yfinance")}
    day = timedelta(days=1)
    assert poll_window_start(["BTC-USD", "ETH-USD"], "1m", resume, now, day) == at("23:58:00")
    assert poll_window_start(["BTC-USD", "NEW-USD"], "1m", resume, now, day) == now - day
    # Yahoo serves 1m bars for 7 days: a series last seen a month ago asks for 7 days.
    old = {("BTC-USD", "1m"): resume[("BTC-USD", "1m")]}
    assert poll_window_start(["BTC-USD"], "1m", old, now + 30 * day, day) == now + 23 * day


def test_backfill_skips_what_is_already_on_raw(fake):
    bars = list(yahoo.backfill_bars(["AAPL"], "5d", "1d", session=fake, clock=Clock(at("13:39:30")),
                                    reachable=lambda: True, after={"AAPL": at("00:00:00", "2024-05-13")}))
    assert rows(bars) == GOLDEN_DAILY[2:]


def test_a_ticker_that_stays_rate_limited_never_holds_up_the_others(fake):
    fake.limited = {"MSFT"}  # for good
    source, clock, _ = source_on(fake, chunk_size=1, poll_interval=60, backoff_initial=20.0)
    stop = FakeStop(clock, max_waits=12)
    drain(source, {}, stop)
    aapl_polls = [p["period1"] for s, p in fake.chart_calls("1m") if s == "AAPL"]
    # Full polls each minute (13:37:25, then 13:38:10, 13:39:10, ...) although MSFT never answers.
    assert len(aapl_polls) >= 3
    assert clock() - at("13:37:25") < timedelta(minutes=len(aapl_polls) + 2)
