"""``python -m recsys.compare``: the fair loss comparison (config ``conf/compare.yaml``).

    python -m recsys.compare losses=[ce,bpr,ssm] 'common="data=ml1m model=sasrec"' trials=20 name=ml1m

Each problem with the protocol (an unknown loss, a search-space key the config lacks, a
malformed range) stops it before anything runs, with one ``error:`` line and exit status 2.
Run the same command again to continue a stopped protocol.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from recsys.config import check_command_line
from recsys.errors import RecsysError
from recsys.outputs import one_line, unwrap


@hydra.main(version_base="1.3", config_path="../../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    from recsys.compare.protocol import run_protocol

    try:
        md = run_protocol(cfg)
    except Exception as exc:
        if not isinstance(unwrap(exc), RecsysError):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    print(md.read_text())
    print(f"written: {md.parent}/(compare.md, compare.csv, tuning_curves.png, final/report/)")


if __name__ == "__main__":
    check_command_line(sys.argv[1:], config_name="compare")
    main()
