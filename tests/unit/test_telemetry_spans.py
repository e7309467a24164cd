"""kaip.telemetry.spans: W3C trace context and the sampling decision, against the OpenTelemetry
SDK's own samplers (the rule they follow), and the sampler settings read from OTEL_TRACES_*."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

from kaip.errors import ConfigError
from kaip.telemetry.otel import sampling_from
from kaip.telemetry.spans import (
    DEFAULT_PER_SECOND,
    DEFAULT_SAMPLING,
    SERVER,
    FinishedSpan,
    Parent,
    Sampling,
    SpanRecorder,
    _Unsampled,
    new_span_id,
    parse_traceparent,
    sole_traceparent,
    traceparent,
    unsampled_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_traceparent_is_read_and_written_back() -> None:
    parent = parse_traceparent(f"00-{TRACE}-00f067aa0ba902b7-01\r\n".encode())
    assert parent == Parent(int(TRACE, 16), 0x00F067AA0BA902B7, True)
    assert traceparent(parent.trace_id, parent.span_id, False) == (
        f"00-{TRACE}-00f067aa0ba902b7-00".encode()
    )


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE}-0000000000000000-01".encode(),  # all-zero span id
        f"ff-{TRACE}-00f067aa0ba902b7-01".encode(),  # version ff is invalid
        f"00-{TRACE.upper()}-00f067aa0ba902b7-01".encode(),  # upper case is not W3C
        f"00-{TRACE}-00f067aa0ba902b7".encode(),
    ],
)
def test_a_malformed_traceparent_starts_a_new_trace(value: bytes) -> None:
    assert parse_traceparent(value) is None


def test_a_higher_version_is_read_by_its_first_four_fields() -> None:
    """W3C Trace Context, "Versioning of traceparent": a version above 00 is parsed by its
    trace id, parent id and flags, whatever a later version adds after them (after a dash);
    it used to be taken as malformed, so the client's trace restarted at the gateway."""
    span = "00f067aa0ba902b7"
    assert parse_traceparent(f"cc-{TRACE}-{span}-01-what-the-future-holds".encode()) == Parent(
        int(TRACE, 16), int(span, 16), True
    )
    assert parse_traceparent(f"01-{TRACE}-{span}-00".encode()) == Parent(
        int(TRACE, 16), int(span, 16), False
    )
    for wrong in (
        f"00-{TRACE}-{span}-01-x",  # version 00 has nothing after its flags
        f"01-{TRACE}-{span}-01x",  # the flags end the value or a dash follows them
        f"ff-{TRACE}-{span}-01-x",  # version ff is invalid whatever follows
        f"cc-{'0' * 32}-{span}-01-x",
    ):
        assert parse_traceparent(wrong.encode()) is None, wrong


def test_an_unsampled_traceparent_is_fresh_random_and_well_formed_across_refills() -> None:
    """The gateway's traceparents for requests it does not trace come from a pool of random hex
    digits filled in bulk: each is a valid version-00 value, flags 00, with ids of its own."""
    pool = _Unsampled(count=8)
    values = [pool.take() for _ in range(50)]  # the pool filled seven times
    parents = [parse_traceparent(value) for value in values]
    assert all(len(v) == 55 and v.startswith(b"00-") and v.endswith(b"-00") for v in values)
    assert all(parent is not None and not parent.sampled for parent in parents)
    assert len({p.trace_id for p in parents if p}) == len({p.span_id for p in parents if p}) == 50
    # Every digit of both ids is random: no column keeps the template's zeros (or any one digit).
    for column in [*range(3, 35), *range(36, 52)]:
        assert len({value[column] for value in values}) > 1, column
    continued = parse_traceparent(unsampled_traceparent(TRACE.encode()))
    assert continued is not None and continued.trace_id == int(TRACE, 16) and not continued.sampled


def test_a_forked_child_draws_ids_of_its_own() -> None:
    """A process forked after its pool was filled (or its random ids seeded) does not repeat
    its parent's next trace and span ids."""
    unsampled_traceparent()  # the pool filled in this process
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, unsampled_traceparent() + b"%016x" % new_span_id())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        theirs = pipe.read()
    os.waitpid(child, 0)
    ours = unsampled_traceparent() + b"%016x" % new_span_id()
    assert len(theirs) == len(ours) == 71
    assert theirs[3:35] != ours[3:35] and theirs[36:52] != ours[36:52]
    assert theirs[55:] != ours[55:]


_HEADERS = [
    [],
    [(b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())],
    [(b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-00".encode())],
    [(b"traceparent", f"cc-{TRACE}-00f067aa0ba902b7-00-later".encode())],
    [(b"traceparent", f"00-{TRACE.upper()}-00f067aa0ba902b7-01".encode())],
    [(b"traceparent", b"x"), (b"traceparent", b"y")],
]


@pytest.mark.parametrize(
    "sampling",
    [
        DEFAULT_SAMPLING,
        Sampling(1.0),
        Sampling(0.0),
        Sampling(1.0, parent_based=False),
        Sampling(0.0, parent_based=False),
        Sampling(1.0, roots=False),
        Sampling(1.0, parent_based=False, roots=False),
    ],
)
def test_the_gateways_open_decides_as_start_from(sampling: Sampling) -> None:
    """``open`` (the gateway's: an unsampled trace gets only the traceparent it passes on) takes
    the decisions of ``start_from``, token bucket included, and passes the same trace on."""
    now = [100.0]
    full = SpanRecorder(lambda span: None, sampling, clock=lambda: now[0])
    quick = SpanRecorder(lambda span: None, sampling, clock=lambda: now[0])
    for turn in range(40):  # past the default's burst of 10, then half a second later
        if turn == 30:
            now[0] += 0.5
        for headers in _HEADERS:
            start = full.start_from(headers)
            opened, passed, continued = quick.open(headers)
            assert (opened is not None) == start.sampled and continued == start.remote_parent
            if opened is not None:
                assert passed == b"" and opened.remote_parent == start.remote_parent
                assert (opened.parent_id, opened.sampled) == (start.parent_id, True)
                assert opened.trace_id == start.trace_id or not start.remote_parent
                continue
            parent = parse_traceparent(passed)
            assert parent is not None and not parent.sampled and passed.startswith(b"00-")
            assert (parent.trace_id == start.trace_id) == start.remote_parent


@pytest.mark.parametrize("roots", [True, False])
def test_a_trace_started_here_and_not_sampled_is_passed_on_only_when_minted(roots: bool) -> None:
    """``open(headers, mint=False)`` (the gateway, for replicas that start no trace of their
    own): a trace it starts and does not sample gets no ``traceparent``; a caller's trace goes on
    whatever its flag (W3C: a received ``traceparent`` MUST be sent on); a sampled one as ever."""
    now = [100.0]
    recorder = SpanRecorder(
        lambda span: None, replace(DEFAULT_SAMPLING, roots=roots), lambda: now[0]
    )
    unsampled = [(b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-00".encode())]
    sampled = [(b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())]
    kept = 0
    for _ in range(3 * int(DEFAULT_PER_SECOND)):  # past the bucket's burst (roots on)
        start, passed, continued = recorder.open([(b"host", b"x")], mint=False)
        if start is None:
            assert (passed, continued) == (b"", False)
        else:
            assert roots and passed == b"" and start.sampled and start.parent_id == 0
            kept += 1
        start, passed, continued = recorder.open(unsampled, mint=False)
        parent = parse_traceparent(passed)
        assert start is None and continued and parent is not None and not parent.sampled
        assert parent.trace_id == int(TRACE, 16) and parent.span_id != 0x00F067AA0BA902B7
        start, passed, continued = recorder.open(sampled, mint=False)
        assert start is not None and start.trace_id == int(TRACE, 16) and passed == b""
    assert kept == (DEFAULT_PER_SECOND if roots else 0)
    start, passed, _ = recorder.open([], mint=True)  # minted as before (an App's replica)
    assert start is None and passed.startswith(b"00-") and passed.endswith(b"-00")


@pytest.mark.parametrize("parent_based", [True, False])
def test_a_process_that_starts_no_trace_follows_callers_only(parent_based: bool) -> None:
    """Roots off (``KAIP_TRACE_ROOTS=off``: a model server behind kaip up's tracing gateway):
    a request without a valid ``traceparent`` is never traced, by any route's decision; one
    with a caller's is decided as with roots on."""
    on = SpanRecorder(lambda span: None, Sampling(1.0, parent_based))
    off = SpanRecorder(lambda span: None, Sampling(1.0, parent_based, roots=False))
    assert not off.roots and on.roots
    for value in (b"", b"  ", b"00-zz-00f067aa0ba902b7-01", f"00-{TRACE}-{'0' * 16}-01".encode()):
        assert off.sampled(value) is None and on.sampled(value) is not None
        assert not off.start_from([(b"traceparent", value)] if value else []).sampled
        assert not off.start(None).sampled
    for flags in ("00", "01"):
        value = f"00-{TRACE}-00f067aa0ba902b7-{flags}".encode()
        decided_on, decided_off = on.sampled(value), off.sampled(value)
        assert (decided_on is None) == (decided_off is None)
        assert decided_off is None or decided_off.trace_id == int(TRACE, 16)
        assert (decided_off is not None) == (flags == "01" or not parent_based)


@given(st.integers(1, 2**128 - 1), st.sampled_from([0.0, 0.001, 0.1, 0.5, 0.999, 1.0]))
def test_a_trace_started_here_is_sampled_as_the_sdks_ratio_sampler_decides(
    trace_id: int, ratio: float
) -> None:
    sdk = TraceIdRatioBased(ratio).should_sample(None, trace_id, "x").decision
    recorder = SpanRecorder(lambda span: None, Sampling(ratio))
    # start(None) mints its own trace id: judge the one the SDK judged through a parent that
    # is not followed (traceidratio, not parent based).
    start = SpanRecorder(lambda span: None, Sampling(ratio, parent_based=False)).start(
        Parent(trace_id, 1, sdk is not Decision.RECORD_AND_SAMPLE)
    )
    assert start.sampled == (sdk is Decision.RECORD_AND_SAMPLE)
    assert recorder.start(Parent(trace_id, 1, True)).sampled  # parent based: followed


def test_parent_based_follows_the_callers_flag_and_ends_record_only_sampled_spans() -> None:
    recorded: list[FinishedSpan] = []
    recorder = SpanRecorder(recorded.append, Sampling(ratio=1.0))
    unsampled = recorder.start(Parent(int(TRACE, 16), 7, False))
    sampled = recorder.start(Parent(int(TRACE, 16), 7, True))
    assert not unsampled.sampled and sampled.sampled
    assert sampled.parent_id == 7 and sampled.remote_parent and sampled.span_id not in (0, 7)
    recorder.end(unsampled, "GET", SERVER, {})
    recorder.end(sampled, "GET", SERVER, {"http.response.status_code": 200})
    [span] = recorded
    assert (span.trace_id, span.span_id, span.parent_id) == (int(TRACE, 16), sampled.span_id, 7)
    assert span.end_ns >= span.start_ns and span.attributes == {"http.response.status_code": 200}
    root = SpanRecorder(recorded.append, Sampling(ratio=1.0)).start(None)
    assert root.sampled and root.parent_id == 0 and not root.remote_parent


def test_the_start_reads_a_traceparent_header_in_any_case() -> None:
    recorder = SpanRecorder(lambda span: None, Sampling(ratio=0.0))
    headers = [(b"host", b"x"), (b"TraceParent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())]
    start = recorder.start_from(headers)
    assert start.trace_id == int(TRACE, 16) and start.sampled


def test_two_traceparent_headers_start_a_new_trace_as_none_would() -> None:
    """W3C Trace Context: more than one ``traceparent`` is invalid, so neither is followed
    (the span recorder used to follow the first while the gateway passed the last on)."""
    other = "0af7651916cd43dd8448eb211c80319c"
    headers = [
        (b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode()),
        (b"TraceParent", f"00-{other}-00f067aa0ba902b7-01".encode()),
    ]
    assert sole_traceparent(headers) == b""
    assert sole_traceparent(headers[1:]) == headers[1][1]
    assert sole_traceparent([(b"traceparent", b" x \r\n")]) == b"x"
    recorder = SpanRecorder(lambda span: None, Sampling(ratio=1.0))
    for start in (recorder.start_from(headers), recorder.sampled_from(headers)):
        assert start is not None and start.sampled
        assert start.trace_id not in (int(TRACE, 16), int(other, 16))
        assert start.parent_id == 0 and not start.remote_parent
    unsampled = [(name, value[:-1] + b"0") for name, value in headers]
    assert SpanRecorder(lambda span: None, Sampling(ratio=0.0)).sampled_from(unsampled) is None


@given(
    st.sampled_from([f"{v:02x}" for v in range(256)]),
    st.sampled_from(["00", "01", "ff", "0A"]),
    st.sampled_from([TRACE, "0" * 32]),
    st.sampled_from(["00f067aa0ba902b7", "0" * 16]),
    st.booleans(),
    st.sampled_from([0.0, 1.0]),
)
def test_the_model_server_s_quick_decision_is_the_full_start_s(
    flags: str, version: str, trace: str, span: str, parent_based: bool, ratio: float
) -> None:
    """``sampled_from`` and ``sampled`` (a valid unsampled version 00 decided by one match,
    other unsampled callers from their flags alone) agree with ``start_from`` on every flags
    byte, valid or not, under either kind of sampler."""
    recorder = SpanRecorder(lambda span: None, Sampling(ratio, parent_based))
    for value in (
        f"{version}-{trace}-{span}-{flags}",
        f" {version}-{trace}-{span}-{flags}x",
        f" {version}-{trace}-{span}-{flags}\t",  # valid once stripped, as sole_traceparent does
        f"{version}-{trace.upper()}-{span}-{flags}",  # upper-case hex: malformed
        f"{version}-{trace}-{span}-{flags}-later",  # read as such from a version above 00
        f"{version}-{trace}-{span}-{flags}".replace("-", "_", 1),
    ):
        headers = [(b"host", b"x"), (b"traceparent", value.encode())]
        full = recorder.start_from(headers)
        for quick in (recorder.sampled_from(headers), recorder.sampled(value.encode())):
            assert (quick is not None) == full.sampled, value
            if quick is not None:  # the same parent (a new trace's ids are random each time)
                assert (quick.parent_id, quick.remote_parent) == (
                    full.parent_id,
                    full.remote_parent,
                )
                assert quick.trace_id == full.trace_id or not full.parent_id
    root = recorder.sampled_from([(b"host", b"x")])
    assert (root is not None) == (ratio == 1.0)


@pytest.mark.parametrize(
    "value",
    [
        f"00-{TRACE}-00f067aa0ba902b7-00x",  # more after the flags
        f"00-{TRACE}-00f067aa0ba902b7-00-later",  # version 00 has nothing after its flags
        f"00-{TRACE}-00f067aa0ba902b7-0",
        f"00-{TRACE.upper()}-00f067aa0ba902b7-00",
        f"00-{'0' * 32}-00f067aa0ba902b7-00",
        f"00-{TRACE}-{'0' * 16}-00",
        f"00-{TRACE}x00f067aa0ba902b7-00",
        f"00-{TRACE[:-1]}-00f067aa0ba902b7-000",
    ],
)
def test_only_a_whole_valid_unsampled_version_00_is_decided_by_the_quick_match(
    value: str,
) -> None:
    """The model server decides ``00-<trace>-<parent>-<flags with bit 0 off>`` by one match;
    anything else that looks like it is invalid, so the trace restarts here (kept: ratio 1)."""
    recorder = SpanRecorder(lambda span: None, Sampling(1.0, parent_based=True))
    assert recorder.sampled(f"00-{TRACE}-00f067aa0ba902b7-00".encode()) is None
    assert recorder.sampled(f"00-{TRACE}-00f067aa0ba902b7-fe".encode()) is None
    start = recorder.sampled(value.encode())
    assert start is not None and start.parent_id == 0 and not start.remote_parent


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, DEFAULT_SAMPLING),
        ({"OTEL_TRACES_SAMPLER_ARG": "0.5"}, DEFAULT_SAMPLING),  # no sampler named: ignored
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, Sampling(1.0, True)),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, Sampling(0.0, False)),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
         Sampling(0.25, False)),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}, Sampling(1.0, True)),
        ({"KAIP_TRACE_ROOTS": "off"}, replace(DEFAULT_SAMPLING, roots=False)),
        ({"KAIP_TRACE_ROOTS": " Off", "OTEL_TRACES_SAMPLER": "always_on"},
         Sampling(1.0, False, roots=False)),
        ({"KAIP_TRACE_ROOTS": "on"}, DEFAULT_SAMPLING),
    ],
)  # fmt: skip
def test_the_sampler_comes_from_the_sdks_variables(
    environ: dict[str, str], expected: Sampling
) -> None:
    assert sampling_from(environ) == expected


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER='jaeger_remote'"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "ten percent"},
            "OTEL_TRACES_SAMPLER_ARG='ten percent'",
        ),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}, "from 0 to 1"),
    ],
)
def test_a_sampler_kaip_cannot_follow_is_refused_by_name(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER") as raised:
        sampling_from(environ)
    assert named in raised.value.message


def test_a_trace_roots_setting_kaip_cannot_follow_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="KAIP_TRACE_ROOTS='none'") as raised:
        sampling_from({"KAIP_TRACE_ROOTS": "none"})
    assert "'off'" in raised.value.message


def test_the_default_keeps_every_trace_started_here_up_to_its_rate() -> None:
    now = [100.0]
    recorder = SpanRecorder(lambda span: None, DEFAULT_SAMPLING, clock=lambda: now[0])
    burst = [recorder.start(None).sampled for _ in range(50)]
    assert sum(burst) == DEFAULT_PER_SECOND and all(burst[: int(DEFAULT_PER_SECOND)])
    now[0] += 0.5  # half a second later: half the rate again
    assert sum(recorder.start(None).sampled for _ in range(50)) == DEFAULT_PER_SECOND / 2
    # A caller's flag is followed whatever the bucket holds.
    assert recorder.start(Parent(int(TRACE, 16), 7, True)).sampled
    assert not recorder.start(Parent(int(TRACE, 16), 7, False)).sampled
    now[0] += 60.0  # idle for a minute: the bucket holds one second's worth, no more
    assert sum(recorder.start(None).sampled for _ in range(50)) == DEFAULT_PER_SECOND
