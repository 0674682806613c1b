"""A skill archive posted through the upload-URL flow (services/skill_uploads.py) is read into the same (path, bytes)
list that `files[]` parts give, and refused with a 400 before the upload rules when it cannot be read safely."""

from __future__ import annotations

import io
import zipfile

import pytest

from managed_agents.domain.errors import InvalidRequest
from managed_agents.services.skill_bundles import MAX_SKILL_BYTES, check_upload
from managed_agents.services.skill_uploads import archive_files

SKILL_MD = b"---\nname: t\ndescription: d\n---\n"


def _zip(
    entries: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_DEFLATED, dirs: tuple[str, ...] = ()
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for d in dirs:
            zf.writestr(zipfile.ZipInfo(d), b"")
        for path, data in entries:
            zf.writestr(path, data)
    return buf.getvalue()


def test_the_files_come_out_in_archive_order_without_directory_entries() -> None:
    entries = [("t/SKILL.md", SKILL_MD), ("t/bin/x.bin", bytes(range(256)))]
    files = archive_files(_zip(entries, dirs=("t/", "t/bin/")))
    assert files == entries
    assert check_upload(files).name == "t"


def test_paths_are_left_to_the_upload_rules_which_refuse_traversal() -> None:
    files = archive_files(_zip([("t/SKILL.md", SKILL_MD), ("t/../../etc/passwd", b"x")]))
    with pytest.raises(InvalidRequest, match=r"\.\."):
        check_upload(files)


def test_an_archive_that_inflates_past_the_skill_cap_is_refused_without_inflating_it_all() -> None:
    # Given a small archive whose one entry inflates to more than the cap (a zip bomb's shape)
    bomb = _zip([("t/SKILL.md", SKILL_MD), ("t/zeros", bytes(MAX_SKILL_BYTES + 1))])
    assert len(bomb) < 100_000
    with pytest.raises(InvalidRequest, match="at most"):
        archive_files(bomb)


def test_what_is_not_a_zip_or_holds_too_many_files_is_a_400() -> None:
    with pytest.raises(InvalidRequest, match="not a zip archive"):
        archive_files(b"PK\x03\x04 truncated")
    with pytest.raises(InvalidRequest, match="at most 1000 files"):
        archive_files(_zip([(f"t/{i}", b"") for i in range(1001)], compression=zipfile.ZIP_STORED))
