"""The one container owner (oci.container.Container) against the real Engine: removed on every
way out, also when the start itself fails or an interrupt lands inside the block."""

from __future__ import annotations

import pytest

from builder.errors import StepFailed
from builder.oci.container import Container
from tests.integration.cpu_cell import BASE

pytestmark = pytest.mark.integration


def _exists(client, name: str) -> bool:
    return bool(client.containers.list(all=True, filters={"name": name}))


@pytest.mark.parametrize("raised", [RuntimeError("boom"), KeyboardInterrupt()])
def test_the_container_is_removed_when_the_block_raises(docker_client, cpu_base, raised):
    with pytest.raises(type(raised)):
        with Container(docker_client, "test", image=BASE, command=["sleep", "60"]) as box:
            name = box.name
            assert _exists(docker_client, name)
            raise raised
    assert not _exists(docker_client, name)


def test_a_finished_container_gives_its_exit_code_and_logs_then_goes(docker_client, cpu_base):
    with Container(docker_client, "test", image=BASE, command=["sh", "-c", "echo one; echo two >&2; exit 3"]) as box:
        assert box.wait(timeout=60) == 3
        assert sorted(box.logs().splitlines()) == ["one", "two"] and box.logs(stderr=False) == "one"
        name = box.name
    assert not _exists(docker_client, name)


def test_a_start_that_fails_is_one_step_error_and_leaves_nothing(docker_client, cpu_base):
    before = {c.name for c in docker_client.containers.list(all=True)}
    with pytest.raises(StepFailed, match="cannot start"):
        with Container(docker_client, "test", image=BASE, command=["/no/such/binary"]):
            pass
    assert {c.name for c in docker_client.containers.list(all=True)} == before
