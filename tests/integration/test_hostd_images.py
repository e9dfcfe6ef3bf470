"""qemu-img volumes on a file storage domain layout: create, thin clone, copy, resize,
info (backing chain), delete."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from hostd import images
from hostd.protocol import VolumeRef
from tests.integration.hostd_fixtures import REQUIRE

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _need_qemu_img() -> None:
    if shutil.which("qemu-img") is None:
        if REQUIRE:
            pytest.fail("qemu-img is required")
        pytest.skip("no qemu-img")


def _ref(sd: Path, disk: str | None = None) -> VolumeRef:
    return VolumeRef(
        sd_path=str(sd), sd_id="sd1", disk_id=disk or str(uuid.uuid4()), volume_id=str(uuid.uuid4())
    )


def test_volume_lifecycle(tmp_path: Path) -> None:
    base_ref = _ref(tmp_path)
    base = images.volume_path(base_ref)
    assert base == tmp_path / "sd1" / "images" / base_ref.disk_id / base_ref.volume_id
    info = images.create(base, 16 << 20)
    assert info.format == "qcow2" and info.virtual_size == 16 << 20 and info.backing is None

    # Thin clone (template -> VM disk): a qcow2 layer on the template's volume.
    thin = images.volume_path(_ref(tmp_path))
    t = images.create(thin, 0, backing=str(base))
    assert t.backing == str(base) and t.virtual_size == 16 << 20
    assert t.chain == [str(thin), str(base)]

    # Full copy: independent of the source.
    full = images.volume_path(_ref(tmp_path))
    c = images.copy(str(thin), full)
    assert c.backing is None and c.virtual_size == 16 << 20

    r = images.resize(str(full), 32 << 20)
    assert r.virtual_size == 32 << 20
    with pytest.raises(images.ImageError, match="shrinking"):
        images.resize(str(full), 1 << 20)

    raw = images.create(images.volume_path(_ref(tmp_path)), 1 << 20, fmt="raw")
    assert raw.format == "raw"

    with pytest.raises(images.ImageError, match="exists"):
        images.create(base, 1 << 20)
    with pytest.raises(images.ImageError, match="backing volume does not exist"):
        images.create(images.volume_path(_ref(tmp_path)), 0, backing=str(tmp_path / "nope"))
    with pytest.raises(images.ImageError, match="invalid"):
        images.volume_path(VolumeRef(sd_path=str(tmp_path), sd_id="..", disk_id="d", volume_id="v"))

    images.delete(str(full))
    assert not full.exists() and not full.parent.exists()  # empty image dir removed
    with pytest.raises(images.ImageError):
        images.delete(str(full))
