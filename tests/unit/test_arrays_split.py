"""Job arrays' pure parts (docs/sessions.md, *Job arrays*): the share-out is exactly the
``canfar`` client's ``chunk``/``stripe`` helpers, and a spec's ``inputs`` are checked
before anything is expanded or launched."""

from __future__ import annotations

import pytest
from canfar.helpers import distributed
from pydantic import ValidationError

from canfarfs.sessions.arrays import share, shares
from canfarfs.sessions.specs import SpecError, validate
from canfarfs.skaha.models import SessionSpec

IMAGE = "images.canfar.net/skaha/astroml:latest"


@pytest.mark.parametrize("how", ["chunk", "stripe"])
@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 8, 40, 41, 100])
@pytest.mark.parametrize("total", [1, 2, 3, 8, 50])
def test_a_share_is_what_the_canfar_helper_gives(how: str, count: int, total: int) -> None:
    items = [f"/arc/raw/{i:03}.fits" for i in range(count)]
    helper = distributed.chunk if how == "chunk" else distributed.stripe
    for replica in range(1, total + 1):
        assert share(items, replica, total, how) == list(helper(items, replica, total))  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["chunk", "stripe"])
@pytest.mark.parametrize(("count", "replicas"), [(40, 8), (41, 8), (3, 8), (1, 1), (10_000, 50)])
def test_every_input_goes_to_exactly_one_replica(how: str, count: int, replicas: int) -> None:
    items = [f"/arc/raw/{i:05}.fits" for i in range(count)]
    parts = shares(items, replicas, how)  # type: ignore[arg-type]
    assert len(parts) == min(count, replicas)  # no replica without work
    assert all(parts)
    assert sorted(p for part in parts for p in part) == items


def spec(**fields: object) -> SessionSpec:
    return validate({"name": "calib", "image": IMAGE, "cmd": "run.sh", **fields})


def test_inputs_one_glob_or_a_list() -> None:
    assert spec(inputs="/arc/home/a/*.fits").inputs == ("/arc/home/a/*.fits",)
    both = spec(inputs=["/arc/home/a/*.fits", "/arc/projects/p/b?.fits"], split="stripe")
    assert both.inputs == ("/arc/home/a/*.fits", "/arc/projects/p/b?.fits")
    assert both.split == "stripe"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"inputs": "/vault/a/*.fits"}, "under /arc/"),
        ({"inputs": "raw/*.fits"}, "under /arc/"),
        ({"inputs": "/arc/"}, "under /arc/"),
        ({"inputs": "/arc/home/a/../b/*.fits"}, "'..'"),
        ({"inputs": "/arc/home//a/*.fits"}, "'//'"),
        ({"inputs": []}, "one glob or a list"),
        ({"inputs": [3]}, "must be text"),
        ({"inputs": "/arc/a/*", "kind": "notebook"}, "only for headless"),
        ({"inputs": "/arc/a/*", "env": {"REPLICA_ID": "1"}}, "REPLICA_ID"),
        ({"inputs": "/arc/a/*", "env": {"INPUTS_FILE": "/x"}}, "INPUTS_FILE"),
        ({"split": "chunk"}, "only with inputs"),
        ({"inputs": "/arc/a/*", "split": "random"}, "split"),
    ],
)
def test_bad_inputs_are_refused_in_words(fields: dict[str, object], words: str) -> None:
    document = {"name": "calib", "image": IMAGE, **fields}
    if document.get("kind", "headless") == "headless":
        document["cmd"] = "run.sh"
    with pytest.raises(SpecError) as info:
        validate(document)
    assert words in info.value.message
    assert info.value.errno == 22


def test_each_replica_gets_its_own_inputs_file_after_the_replica_variables() -> None:
    s = spec(inputs="/arc/a/*", replicas=2, env={"MODE": "fast"})
    params = s.create_params(
        {1: {"INPUTS_FILE": "/arc/m/1.txt"}, 2: {"INPUTS_FILE": "/arc/m/2.txt"}}
    )
    envs = [[v for k, v in p if k == "env"] for p in params]
    assert envs == [
        ["MODE=fast", "REPLICA_ID=1", "REPLICA_COUNT=2", "INPUTS_FILE=/arc/m/1.txt"],
        ["MODE=fast", "REPLICA_ID=2", "REPLICA_COUNT=2", "INPUTS_FILE=/arc/m/2.txt"],
    ]


def test_share_refuses_a_replica_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"not in 1\.\.3"):
        share(["a"], 4, 3, "chunk")
    with pytest.raises(ValidationError):
        SessionSpec.model_validate({"name": "x", "image": IMAGE, "inputs": "/etc/*"})
