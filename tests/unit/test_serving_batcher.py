"""The adaptive batcher on a real event loop with a plain predict function."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from kaip.errors import OverloadedError
from kaip.serving.batcher import Batcher, Outputs


class Doubler:
    """predict(x) = 2x, counting calls and the rows of each."""

    def __init__(self, fail_on: float | None = None, sleep: float = 0.0) -> None:
        self.batches: list[int] = []
        self.fail_on = fail_on
        self.sleep = sleep

    def __call__(self, inputs: dict[str, np.ndarray]) -> Outputs:
        x = inputs["x"]
        self.batches.append(x.shape[0])
        time.sleep(self.sleep)
        if self.fail_on is not None and (x == self.fail_on).any():
            raise ValueError("bad row")
        return {"y": x * 2}


def submit_all(batcher: Batcher, arrays: list[np.ndarray]) -> list[Outputs | BaseException]:
    async def main() -> list[Outputs | BaseException]:
        futures = [batcher.submit({"x": a}, a.shape[0], a.shape[1:]) for a in arrays]
        return await asyncio.gather(*futures, return_exceptions=True)

    return asyncio.run(main())


def make(predict: Doubler, **kwargs: object) -> Batcher:
    options: dict[str, object] = {"max_batch_size": 8, "max_delay": 0.002, "max_queue": 100}
    options.update(kwargs)
    return Batcher(predict, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("inline", [True, False])
def test_requests_of_one_turn_share_a_call_and_split_back(inline: bool) -> None:
    predict = Doubler()
    arrays = [np.full((i % 3 + 1, 2), float(i)) for i in range(6)]
    results = submit_all(make(predict, max_batch_size=64, inline=inline), arrays)
    for array, result in zip(arrays, results, strict=True):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["y"], array * 2)
    assert predict.batches == [sum(a.shape[0] for a in arrays)]


def test_batches_never_exceed_max_rows() -> None:
    predict = Doubler()
    arrays = [np.ones((3, 1)) for _ in range(5)]
    submit_all(make(predict, max_batch_size=7), arrays)
    assert predict.batches == [6, 6, 3]


def test_a_failing_request_fails_alone() -> None:
    predict = Doubler(fail_on=-1.0)
    arrays = [np.array([[1.0]]), np.array([[-1.0]]), np.array([[3.0]])]
    results = submit_all(make(predict), arrays)
    assert isinstance(results[1], ValueError)
    assert [r["y"].tolist() for r in (results[0], results[2])] == [[[2.0]], [[6.0]]]  # type: ignore[index]
    assert predict.batches == [3, 1, 1, 1]  # the batch, then each request alone


def test_different_keys_are_not_merged() -> None:
    predict = Doubler()
    results = submit_all(make(predict), [np.ones((1, 2)), np.ones((1, 3)), np.ones((1, 2))])
    assert all(isinstance(r, dict) for r in results)
    assert sorted(predict.batches) == [1, 2]


def test_a_full_queue_refuses_with_retry_after() -> None:
    batcher = make(Doubler(), max_queue=2)

    async def main() -> None:
        batcher.submit({"x": np.ones((1, 1))}, 1, ())
        batcher.submit({"x": np.ones((1, 1))}, 1, ())
        with pytest.raises(OverloadedError) as full:
            batcher.submit({"x": np.ones((1, 1))}, 1, ())
        assert full.value.retry_after == 1.0
        await asyncio.sleep(0.01)

    asyncio.run(main())


def test_unbatchable_models_get_one_request_per_call() -> None:
    predict = Doubler()
    submit_all(make(predict, batchable=False), [np.ones((1, 1))] * 3)
    assert predict.batches == [1, 1, 1]


def test_a_slow_thread_predict_lets_the_next_batch_fill() -> None:
    predict = Doubler(sleep=0.05)
    batcher = make(predict, inline=False, max_batch_size=64)

    async def main() -> None:
        first = batcher.submit({"x": np.ones((1, 1))}, 1, ())
        await asyncio.sleep(0.01)  # the first batch is predicting on the worker thread
        rest = [batcher.submit({"x": np.ones((1, 1))}, 1, ()) for _ in range(10)]
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    batcher.close()
    assert predict.batches == [1, 10]


def test_requests_past_their_deadline_are_answered_503_not_predicted() -> None:
    predict = Doubler()
    results = submit_all(make(predict, timeout=0.0), [np.ones((1, 1))] * 2)
    assert all(isinstance(r, OverloadedError) for r in results)
    assert "timeoutSeconds" in str(results[0])
    assert predict.batches == []
