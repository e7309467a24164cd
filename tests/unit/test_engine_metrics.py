# ruff: noqa: E501  (vLLM's /metrics lines below are quoted as they are)
"""The engines' metric maps (:func:`kaip.serving.engines.translate`) on real engines' /metrics text,
and what the relay reads from a stream (:class:`kaip.serving.stream_watch.StreamWatch`)."""

from __future__ import annotations

import orjson
import pytest

from kaip.serving.engine_process import engine_environment
from kaip.serving.engines import PROFILES, profile, translate
from kaip.serving.stream_watch import UNREAD_BYTES, StreamWatch

# vLLM's own example of its /metrics output: vllm-project/vllm, docs/design/metrics.md ("Example
# output", commit 0328b592a3d35f9b4dc5549d2a3fb8d1531c8e5f), the lines it shows as they are.
VLLM_DOCS_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 27453.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="stop",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.0
vllm:request_success_total{finished_reason="length",model_name="meta-llama/Llama-3.1-8B-Instruct"} 131.0
vllm:request_success_total{finished_reason="abort",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{le="0.005",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{le="0.01",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{le="0.02",model_name="meta-llama/Llama-3.1-8B-Instruct"} 13.0
vllm:time_to_first_token_seconds_bucket{le="0.04",model_name="meta-llama/Llama-3.1-8B-Instruct"} 97.0
vllm:time_to_first_token_seconds_bucket{le="0.06",model_name="meta-llama/Llama-3.1-8B-Instruct"} 123.0
vllm:time_to_first_token_seconds_bucket{le="0.08",model_name="meta-llama/Llama-3.1-8B-Instruct"} 138.0
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 140.0
vllm:time_to_first_token_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 140.0
"""

# The v1 engine's gauges and counters kaip maps, as vLLM writes them (names from the list in
# the same docs/design/metrics.md, "v1 Metrics"), under data parallelism: two engines.
VLLM_TWO_ENGINES = """\
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
vllm:num_requests_waiting{engine="1",model_name="m"} 3.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 1000.0
vllm:prompt_tokens_total{engine="1",model_name="m"} 500.0
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 750.0
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.01",model_name="m"} 4.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 10.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} 0.5
vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 10.0
vllm:inter_token_latency_seconds_bucket{engine="1",le="0.01",model_name="m"} 1.0
vllm:inter_token_latency_seconds_bucket{engine="1",le="+Inf",model_name="m"} 2.0
vllm:inter_token_latency_seconds_sum{engine="1",model_name="m"} 0.25
vllm:inter_token_latency_seconds_count{engine="1",model_name="m"} 2.0
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 99.0
vllm:time_per_output_token_seconds_sum{engine="0",model_name="m"} 9.0
vllm:time_per_output_token_seconds_count{engine="0",model_name="m"} 99.0
"""

# llama.cpp's llama-server with --metrics (tools/server/server.cpp's names).
LLAMACPP_METRICS = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1234
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 5678
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 0
"""


def test_vllms_documented_metrics_read_in_kaips_names() -> None:
    snapshot = translate(VLLM_DOCS_METRICS, profile("vllm"))
    assert snapshot.stats == {"busy": 8.0, "generated_tokens": 27453.0}
    ttft = snapshot.histograms["kaip_engine_time_to_first_token_seconds"]
    assert ttft.cumulative() == [
        ("0.001", 0.0), ("0.005", 0.0), ("0.01", 0.0), ("0.02", 13.0), ("0.04", 97.0),
        ("0.06", 123.0), ("0.08", 138.0), ("0.1", 140.0),
    ]  # fmt: skip


def test_several_engines_are_summed_and_ratios_averaged() -> None:
    snapshot = translate(VLLM_TWO_ENGINES, profile("vllm"))
    assert snapshot.stats == {
        "waiting": 5.0,
        "kv_cache_usage": 0.5,
        "prompt_tokens": 1500.0,
        "prompt_cached_tokens": 750.0,
    }
    tpot = snapshot.histograms["kaip_engine_time_per_output_token_seconds"]
    # inter_token_latency (the newer name) came first: the deprecated twin is not added to it
    assert tpot.cumulative() == [("0.01", 5.0), ("+Inf", 12.0)]
    assert tpot.sum == 0.75


def test_llama_servers_metrics_read_in_kaips_names() -> None:
    snapshot = translate(LLAMACPP_METRICS, profile("llama-server"))
    assert snapshot.stats == {
        "prompt_tokens": 1234.0,
        "generated_tokens": 5678.0,
        "busy": 1.0,
        "waiting": 0.0,
    }


def test_another_engines_names_are_not_read() -> None:
    assert translate(LLAMACPP_METRICS, profile("vllm")).stats == {}
    assert translate("", profile("sglang")).stats == {}


def test_text_that_is_not_prometheus_is_an_error() -> None:
    with pytest.raises(ValueError):
        translate("vllm:num_requests_running{oops 1\n", profile("vllm"))


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_engine_listens_on_loopback_under_the_served_name(name: str) -> None:
    for pod in (False, True):
        argv = profile(name).command("/models/m", "served", 8123, ["--x", "1"], pod=pod)
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert argv[argv.index("--port") + 1] == "8123"
        assert "served" in argv and "/models/m" in argv
        assert argv[-2:] == ["--x", "1"]  # the user's arguments last, as written


def test_the_engine_does_not_inherit_the_replicas_address() -> None:
    env = engine_environment({"PORT": "8080", "HOST": "0.0.0.0", "HF_HOME": "/cache"})
    assert env == {"HF_HOME": "/cache"}


def _event(doc: object) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def test_a_stream_is_passed_on_whole_events_and_its_usage_read() -> None:
    first = _event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    text = [_event({"choices": [{"index": 0, "delta": {"content": w}}]}) for w in ("a", "b")]
    usage = _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    stream = first + b"".join(text) + usage + b"data: [DONE]\n\n"
    watch = StreamWatch(drop_usage_chunk=False)
    # cut anywhere: only whole events go on, in order, nothing held after the end
    out = b"".join(watch.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    assert out + watch.flush() == stream
    assert watch.first_text_at is not None
    assert (watch.text_events, watch.usage_tokens, watch.tokens) == (2, 2, 2)


def test_the_usage_chunk_the_client_did_not_ask_for_is_dropped() -> None:
    text = _event({"choices": [{"index": 0, "text": "x"}]}).replace(b"\n\n", b"\r\n\r\n")
    usage = _event({"choices": [], "usage": {"completion_tokens": 1}})
    watch = StreamWatch(drop_usage_chunk=True)
    assert watch.feed(text + usage + b"data: [DONE]\n\n") == text + b"data: [DONE]\n\n"
    assert watch.tokens == 1


def test_without_usage_tokens_are_the_events_with_text() -> None:
    watch = StreamWatch(drop_usage_chunk=False)
    events = [_event({"choices": [{"index": 0, "text": t}]}) for t in ("a", "", "b", "c")]
    watch.feed(b"".join(events))
    assert watch.tokens == 3 and watch.usage_tokens is None


def test_a_responses_stream_is_measured_from_its_data_lines() -> None:
    delta = b'event: response.output_text.delta\ndata: {"type": "response.output_text.delta", "delta": "hi"}\n\n'
    done = b'event: response.completed\ndata: {"type": "response.completed", "response": {"usage": {"output_tokens": 5}}}\n\n'
    watch = StreamWatch(drop_usage_chunk=False)
    assert watch.feed(delta + delta + done) == delta + delta + done
    assert watch.text_events == 2 and watch.first_text_at is not None
    assert watch.tokens == 5  # the engine's count, not the events'


@pytest.mark.parametrize("cut", [1, 5, 64, 10_000])
def test_events_cut_anywhere_are_passed_on_alike_and_the_usage_chunk_dropped(cut: int) -> None:
    """However the engine's writes cut a stream (one event per read, several, a part of one):
    the same events go on, whole, and the usage chunk the client did not ask for does not."""
    role = _event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]})
    text = [_event({"choices": [{"index": 0, "delta": {"content": w}}]}) for w in "abc"]
    end = _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    usage = _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3}})
    stream = role + b"".join(text) + end + usage + b"data: [DONE]\n\n"
    watch = StreamWatch(drop_usage_chunk=True)
    out = b"".join(watch.feed(stream[i : i + cut]) for i in range(0, len(stream), cut))
    assert out + watch.flush() == stream.replace(usage, b"")
    assert (watch.text_events, watch.usage_tokens) == (3, 3)


@pytest.mark.parametrize("newline", [b"\n\n", b"\r\n\r\n"])
def test_one_event_per_read_is_passed_on_alike_and_the_usage_chunk_dropped(newline: bytes) -> None:
    """As llama-server writes a stream (one event per write, so mostly one per read): each
    event goes on as it came, the usage chunk the client did not ask for does not, and a
    multi-line event after the first text is still looked at."""
    text = [_event({"choices": [{"index": 0, "text": w}]}) for w in "abc"]
    end = _event({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
    usage = _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3}})
    done = b'event: response.completed\ndata: {"type": "response.completed"}\n\n'
    events = [e.replace(b"\n\n", newline) for e in (*text, end, usage, b"data: [DONE]\n\n")]
    watch = StreamWatch(drop_usage_chunk=True)
    out = [watch.feed(event) for event in (*events, done)]
    assert out == [*events[:4], b"", events[5], done]
    assert (watch.text_events, watch.usage_tokens, watch.tokens) == (3, 3, 3)


def test_a_long_stream_without_usage_is_counted_exactly_in_bounded_memory() -> None:
    """Events after the first text wait unparsed only while the engine may still send usage,
    and never more than UNREAD_BYTES of them."""
    watch = StreamWatch(drop_usage_chunk=True)
    events = [_event({"choices": [{"index": 0, "text": "w" * (i % 2)}]}) for i in range(4000)]
    for event in events:
        assert watch.feed(event) == event
        assert watch.unparsed_bytes <= UNREAD_BYTES
    assert watch.tokens == 2000 and watch.usage_tokens is None
