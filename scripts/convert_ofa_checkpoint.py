"""Convert one of OFA's published supernets (MIT's files, downloaded by you) into an oncenas checkpoint.

    python scripts/convert_ofa_checkpoint.py ofa_mbv3_d234_e346_k357_w1.2 ofa_mbv3_w12.ckpt
    python search.py ckpt=ofa_mbv3_w12.ckpt data.root=/path/to/my/images export.top_k=3

The supernet is picked from the file (``--supernet`` to force one; a file of another space is refused). The output
is what ``train.py`` writes, so ``search.py ckpt=``, ``scripts/build_accuracy_dataset.py ckpt=`` and
``supernets.training.checkpoint.load_supernet`` read it. ``--data-root`` records your image folder
(``<root>/<class>/*.jpg``) as the checkpoint's data, for BN recalibration and accuracy datasets.
"""

from __future__ import annotations

import argparse

from supernets.pretrained import OFA_FILES, convert_ofa_checkpoint


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="OFA's published file, e.g. " + ", ".join(OFA_FILES.values()))
    ap.add_argument("dst", help="the oncenas checkpoint to write (.ckpt)")
    ap.add_argument("--supernet", choices=sorted(OFA_FILES), default=None, help="default: the one the file fits")
    ap.add_argument("--data-root", default=None, help="your <class>/*.jpg image folder, recorded as the data")
    ap.add_argument("--image-size", type=int, default=224, help="training crop of --data-root images")
    args = ap.parse_args(argv)
    data = ({"name": "imagefolder", "root": args.data_root, "image_size": args.image_size, "batch_size": 32}
            if args.data_root else None)
    meta = convert_ofa_checkpoint(args.src, args.dst, supernet=args.supernet, data=data)
    print(f"wrote {args.dst}: supernet {meta['supernet']} from {args.src}"
          + (f", data {args.data_root}" if data else "; pass data.root=<image folder> to search.py to recalibrate BN"))
    return meta


if __name__ == "__main__":
    main()
