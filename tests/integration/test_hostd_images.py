"""qemu-img volumes on a file storage domain layout: create, thin clone, copy, resize,
info (backing chain), delete."""

from __future__ import annotations

import shutil
import subprocess
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


def _qemu_io(path: Path, cmd: str, fmt: str = "qcow2") -> str:
    out = subprocess.run(
        ["qemu-io", "-f", fmt, "-c", cmd, str(path)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 or "Pattern verification failed" in out.stdout, out.stderr
    return out.stdout


@pytest.mark.parametrize("base_fmt", ["qcow2", "raw"])
def test_cold_merge_of_any_layer_keeps_the_data(tmp_path: Path, base_fmt: str) -> None:
    """base <- s1 <- s2 with different data in each: merging s1 (a middle layer) and then
    s2 (the leaf) leaves one volume that reads everything; a wrong layer is refused."""
    if shutil.which("qemu-io") is None:
        pytest.skip("no qemu-io")
    disk = str(uuid.uuid4())
    base = images.volume_path(_ref(tmp_path, disk))
    images.create(base, 4 << 20, base_fmt)
    s1 = images.volume_path(_ref(tmp_path, disk))
    images.create(s1, 0, "qcow2", str(base), base_fmt)
    s2 = images.volume_path(_ref(tmp_path, disk))
    images.create(s2, 0, "qcow2", str(s1), "qcow2")
    _qemu_io(base, "write -P 0xaa 0 64k", base_fmt)
    _qemu_io(s1, "write -P 0xbb 64k 64k")
    _qemu_io(s2, "write -P 0xcc 128k 64k")

    def reads_all(path: Path, fmt: str = "qcow2") -> bool:
        out = "".join(
            _qemu_io(path, f"read -P {p:#x} {at} 64k", fmt)
            for p, at in ((0xAA, 0), (0xBB, 65536), (0xCC, 131072))
        )
        return "Pattern verification failed" not in out

    assert not reads_all(s1)  # s1 does not see s2's data yet
    with pytest.raises(images.ImageError, match="bottom"):
        images.merge_layer(str(s2), str(base))
    with pytest.raises(images.ImageError, match="not in the backing chain"):
        images.merge_layer(str(s1), str(s2))

    after = images.merge_layer(str(s2), str(s1))
    assert after.path == str(s2) and after.chain == [str(s2), str(base)]
    assert not s1.exists()
    assert reads_all(s2)

    after = images.merge_layer(str(s2), str(s2))
    assert after.path == str(base) and after.chain == [str(base)]
    assert not s2.exists()
    assert reads_all(base, base_fmt)
