"""Downloading the MC_Maze NWB files from the DANDI archive.

dandi's own downloader does the work: it resumes an interrupted download and checks each file
against the digest DANDI lists for the asset before putting it in place. One quick request
first proves the archive is reachable, because dandi's client retries a failed connection for
about a minute; offline, :class:`MazeDataUnavailable` says at once what to do instead.
"""
from __future__ import annotations

from pathlib import Path

from .maze_catalogue import (SESSIONS, SYNTHETIC_ENV, MazeDataError, MazeDataUnavailable, check_name,
                             dandi_paths, session_dir)

DANDI_API_URL = "https://api.dandiarchive.org/api"


def check_reachable(timeout_s: float = 10.0) -> None:
    """Raise ``requests.RequestException`` unless the DANDI API answers within ``timeout_s``."""
    import requests

    requests.get(f"{DANDI_API_URL}/info/", timeout=timeout_s).raise_for_status()


def unavailable(name: str, missing: Path, error: Exception) -> MazeDataUnavailable:
    """The error for a file that is neither in the cache nor downloadable right now."""
    dandiset, _ = SESSIONS[name]
    return MazeDataUnavailable(
        f"Cannot load {name}: {missing.name} (DANDI:{dandiset}) is not in the cache and DANDI "
        f"could not be reached ({type(error).__name__}: {str(error)[:200]}).\n"
        f"  Looked for: {missing}\n"
        f"  To continue, either\n"
        f"   - download it where there is network (tutorial_utils.data.download_session"
        f"({name!r}), or `dandi download DANDI:{dandiset}`) and copy the sub-Jenkins/ folder "
        f"into {missing.parent.parent}, or\n"
        f"   - set {SYNTHETIC_ENV}=1 to use the synthetic stand-in (simulated data, clearly "
        f"labelled as such)."
    )


def download_session(name: str, data_dir: str | Path | None = None, *, include_test: bool = True,
                     timeout_s: float = 10.0) -> list[Path]:
    """Download session ``name``'s NWB files from DANDI into the cache; return their paths.

    Files already there are skipped. Raises :class:`MazeDataUnavailable` quickly when DANDI
    cannot be reached, and :class:`MazeDataError` when a download fails (run again to resume).
    """
    import requests
    from dandi.download import DownloadExisting, download

    name = check_name(name)
    folder = session_dir(name, data_dir=data_dir)
    wanted = dandi_paths(name)[: 2 if include_test else 1]
    targets = [folder / path for path in wanted]
    missing = [(path, target) for path, target in zip(wanted, targets) if not target.exists()]
    if not missing:
        return targets
    try:
        check_reachable(timeout_s)
    except requests.RequestException as error:
        raise unavailable(name, missing[0][1], error) from error
    dandiset, _ = SESSIONS[name]
    for path, target in missing:
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"Downloading DANDI:{dandiset}/{path} to {target}")
        try:  # an asset URL downloads to output_dir/<file name>; dandi resumes and checks the digest
            download(f"dandi://DANDI/{dandiset}/{path}", target.parent, existing=DownloadExisting.REFRESH,
                     get_metadata=False)
        except Exception as error:
            raise MazeDataError(f"downloading DANDI:{dandiset}/{path} into {target.parent} failed "
                                f"({type(error).__name__}: {error}); run download_session({name!r}) "
                                "again to resume") from error
        if not target.exists():
            raise MazeDataError(f"dandi reported success but {target} is not there; the dandiset "
                                "layout may have changed")
    return targets


if __name__ == "__main__":
    import sys

    for session_name in sys.argv[1:] or ["mc_maze_small"]:
        print(download_session(session_name))
