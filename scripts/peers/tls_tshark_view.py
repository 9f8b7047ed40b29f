#!/usr/bin/env python3
"""tshark views of the wss:// fixtures: scripts/tshark_view.py, wrapped.

    tls_tshark_view.py CAPTURE              # writes CAPTURE-stem.tshark.json
    tls_tshark_view.py --nokeys CAPTURE OUT # the same view made WITHOUT the keys

scripts/tshark_view.py runs shared/corpus/tshark_oracle.py unchanged; the oracle
adds `-o tls.keylog_file:<capture-stem>.keylog` by itself when that file sits
next to the capture, and tshark reads the keys of a pcapng Decryption Secrets
Block on its own.  tshark recognises TLS on the fixtures' non-standard ports by
its heuristics, and HTTP/WebSocket inside it, so no decode-as is needed.

The only change this wrapper makes to the oracle's output: the key log path in
`tshark_args` is written relative to the capture (the oracle writes the
absolute path of the recorder's temporary folder), so the file is the same
wherever it was recorded.

--nokeys copies the capture alone into a temporary folder (no key log beside
it) and runs the same view there: what tshark sees of the encrypted capture.
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import tshark_view  # noqa: E402


def relativize(view_path: Path) -> None:
    data = json.loads(view_path.read_text())
    args = data.get("tshark_args") or []
    for i, a in enumerate(args):
        if a.startswith("tls.keylog_file:"):
            args[i] = "tls.keylog_file:" + os.path.basename(a.split(":", 1)[1])
    view_path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


def main(argv):
    if argv[:1] == ["--nokeys"]:
        cap, out = Path(argv[1]).resolve(), Path(argv[2]).resolve()
        with tempfile.TemporaryDirectory(prefix="wsclose-nokeys-") as d:
            tmp = Path(d) / cap.name
            shutil.copyfile(cap, tmp)
            rc = tshark_view.main([str(tmp)])
            view = tmp.with_name(tmp.name.rsplit(".", 1)[0] + ".tshark.json")
            data = json.loads(view.read_text())
            if any(a.startswith("tls.keylog_file:") for a in data.get("tshark_args", [])):
                sys.exit("tls_tshark_view.py: a key log was used for the --nokeys view")
            data["generator"] += " (--nokeys: the capture alone, without its key log)"
            out.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        print(f"wrote {out.name} (no keys)")
        return rc
    if not argv:
        sys.exit(__doc__)
    rc = tshark_view.main(argv)
    for p in argv:
        cap = Path(p).resolve()
        relativize(cap.with_name(cap.name.rsplit(".", 1)[0] + ".tshark.json"))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
