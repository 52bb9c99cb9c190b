"""``python -m recsys.export``: export a trained run for serving (config ``conf/export/``).

    python -m recsys.export ckpt_path=<run>/checkpoints/best.ckpt [out_dir=...] [index=flat|ivf|hnsw]

Bad input (no or a missing checkpoint, a folder without ``config_resolved.yaml``, a model
that is not scored by inner products, an unknown index, an index setting out of range)
stops it with one ``error:`` line and exit status 2; nothing is written then.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from recsys.config import CONF_DIR, check_command_line, validate
from recsys.errors import RecsysError
from recsys.outputs import one_line, unwrap


@hydra.main(version_base="1.3", config_path="../../conf/export", config_name="export")
def main(cfg: DictConfig) -> None:
    from recsys.export.exporter import export

    try:
        validate(cfg)
        out, manifest = export(cfg)
    except Exception as exc:
        if not isinstance(unwrap(exc), RecsysError):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    print(summary(out, manifest))


def summary(out, manifest: dict) -> str:
    """What was written, the check, and the measurements, in a few lines."""
    check, m = manifest["check"], manifest["measurement"]
    s, t = check["scores"], check["exact_topk"]
    worst = max(s["max_abs_diff"], check["scores_batch_1"]["max_abs_diff"])
    recall = m["recall"]
    lines = [
        f"exported {manifest['model']['class']} on {manifest['data']['dataset']} to {out}: "
        + ", ".join(manifest["files"]),
        f"check ({'passed' if check['passed'] else 'FAILED'}): max |exported - checkpoint score| {worst:.2e} "
        f"(allowed {s['atol']:g}) on {s['rows']} test users, as a batch and one by one; exact index = torch top-{t['k']} "
        f"({t['beyond_ties']} beyond ties)",
        f"recall@{recall['k']} of {recall['index']} against exact search: {recall['value']:.4f} over {m['queries']} test queries",
    ]
    for name, ms in m["latency_ms"].items():
        lines.append(f"latency {name}: {ms['batch_1_ms_per_query']:.3f} ms at batch 1, "
                     f"{ms['batch_ms_per_batch']:.2f} ms per batch of {ms['batch_size']}")
    return "\n".join(lines)


def cli() -> None:
    check_command_line(sys.argv[1:], CONF_DIR / "export", "export")
    main()


if __name__ == "__main__":
    cli()
