#!/usr/bin/env python3
"""Write fixtures/<name>.tshark.json: tshark's view of a recorded fixture.

This reuses the public corpus oracle (../shared/corpus/tshark_oracle.py, or
the file named by $WSCLOSE_TSHARK_ORACLE) unchanged, so the JSON has exactly
the same shape as the corpus' *.tshark.json files: per TCP stream the client
and server endpoints, every WebSocket frame tshark decoded (time_epoch,
sender, opcode, close code/reason), every FIN/RST segment, and a summary with
first_close_frame, close_frame_senders, first_fin and first_rst.

The only addition is a per-fixture list of extra tshark arguments (below),
for captures that tshark cannot decode with its defaults.

    python3 scripts/tshark_view.py fixtures/py-client-close.pcap [...]
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Extra tshark arguments per fixture file name (keep README.md in sync).
EXTRA_ARGS = {
    # The capture starts after the opening handshake: tshark only decodes
    # WebSocket there with the (default-off) WebSocket-over-TCP heuristic.
    "py-midstream.pcap": ["--enable-heuristic", "websocket_tcp"],
}


def load_oracle():
    cands = [os.environ.get("WSCLOSE_TSHARK_ORACLE"),
             REPO.parent / "shared" / "corpus" / "tshark_oracle.py",
             Path("/work/shared/corpus/tshark_oracle.py")]
    for c in cands:
        if c and Path(c).is_file():
            spec = importlib.util.spec_from_file_location("tshark_oracle", str(c))
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod, Path(c)
    sys.exit("tshark_view.py: tshark_oracle.py not found (set WSCLOSE_TSHARK_ORACLE)")


def main(argv):
    if not argv:
        sys.exit(__doc__)
    oracle, where = load_oracle()
    oracle.EXTRA_ARGS.update(EXTRA_ARGS)  # keyed by file name for captures outside public/
    for p in argv:
        cap = Path(p).resolve()
        data = oracle.build_oracle(cap)
        data["generator"] = "tshark_oracle.py (shared/corpus) via scripts/tshark_view.py"
        dest = cap.with_name(cap.name.rsplit(".", 1)[0] + ".tshark.json")
        dest.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        print(f"wrote {dest.relative_to(REPO) if REPO in dest.parents else dest}: "
              f"streams={data['tcp_stream_count']} ws_streams={data['websocket_stream_count']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
