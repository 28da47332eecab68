"""Export a trained record (or finished run folder) to one compact file, and measure it.

    python scripts/export.py results/runs/lenet300_sparsevd/seed0 --out lenet300.svd
    python scripts/export.py RUN_DIR --out net.svd --values f4          # lossless
    python scripts/export.py RUN_DIR --out net.svd --bits 3 --codec none
    python scripts/export.py RUN_DIR --out net.onnx --format onnx       # the same network as ONNX

Load it with ``from sparsevd.export import load; net = load("lenet300.svd")``: a plain
torch.nn.Module taking raw images (N, 1, 28, 28) in [0, 1] and returning logits (N, 10).
The ONNX file holds the compact file's network with its values (``--values``, ``--bits``; ``--index``
and ``--codec`` do not apply) and runs in onnxruntime:
``onnxruntime.InferenceSession("net.onnx").run(None, {"images": images})[0]`` (images: float32 numpy).
"""
import argparse
import sys
from pathlib import Path

from sparsevd.data import DataError
from sparsevd.compress.deploy import DEFAULT, export_record
from sparsevd.compress.export import FORMATS, ExportError, ExportOptions
from sparsevd.compress.weights import WeightsError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("record", type=Path, help="results/runs/<row>/seed<k> or a finished run folder")
    p.add_argument("--out", type=Path, required=True, help="the file to write (e.g. net.svd, net.onnx)")
    p.add_argument("--format", default=FORMATS[0], help="svd (the compact file, default) or onnx (needs the onnx "
                                                         "extra: pip install 'sparsevd[onnx]')")
    p.add_argument("--values", default=DEFAULT.values, help="codebook (default), f2, or f4 (lossless)")
    p.add_argument("--bits", type=int, default=DEFAULT.bits, help="codebook bits per weight (1-8)")
    p.add_argument("--index", default=DEFAULT.index, help="auto (bitmap or delta varints) or raw")
    p.add_argument("--codec", default=DEFAULT.codec, help="auto (LZMA where it pays), lzma or none")
    args = p.parse_args(argv)
    try:
        opts = ExportOptions(values=args.values, bits=args.bits, index=args.index, codec=args.codec)
        r = export_record(args.record, args.out, opts, format=args.format)
    except (ExportError, WeightsError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {r['bytes']:,} bytes; dense fp32 parameters {r['dense_bytes']:,} bytes "
          f"({r['ratio']:.0f}x fewer); test error of the loaded file {r['test_error']:.2f} %"
          f"{' (onnxruntime)' if args.format == 'onnx' else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
