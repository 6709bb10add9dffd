"""Build hook: compile `samsa.protocol._walk` (the record walk of produce validation, in C).

samsa works without it (`samsa.protocol.records_walk` falls back to the same walk in Python), so
a machine without a C compiler still installs samsa, with a warning; produce validation then
costs about two microseconds a record more. `SAMSA_NO_EXTENSION=1` skips the build.

The extension is compiled next to its source, `src/samsa/protocol/`: an editable install finds it
there, a wheel gets it through `force_include`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/samsa/protocol/_walk.c")


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("SAMSA_NO_EXTENSION") == "1":
            return
        built = compile_extension(Path(self.root))
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(built)] = f"samsa/protocol/{built.name}"


def compile_extension(root: Path) -> Path | None:
    source = root / SOURCE
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    linker = sysconfig.get_config_var("LDSHARED")
    if not suffix or not linker:
        print("samsa: no C toolchain configured; record validation runs in Python", file=sys.stderr)
        return None
    target = source.with_name(f"_walk{suffix}")
    command = [
        *shlex.split(linker),
        "-O2",
        "-fPIC",
        f"-I{sysconfig.get_paths()['include']}",
        str(source),
        "-o",
        str(target),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        print(
            f"samsa: could not compile {SOURCE} ({detail}); record validation runs in Python",
            file=sys.stderr,
        )
        return None
    return target
