"""Convert one of OFA's published supernets (MIT's files, downloaded by you) into an oncenas checkpoint.

    python scripts/convert_ofa_checkpoint.py src=ofa_mbv3_d234_e346_k357_w1.2 dst=ofa_mbv3_w12.ckpt
    python search.py ckpt=ofa_mbv3_w12.ckpt data.root=/path/to/my/images export.top_k=3

The supernet is picked from the file (``supernet=`` to force one; a file of another space is refused). The output
is what ``train.py`` writes, so ``search.py ckpt=``, ``scripts/build_accuracy_dataset.py ckpt=`` and
``supernets.training.checkpoint.load_supernet`` read it. ``data_root=`` records your image folder
(``<root>/<class>/*.jpg``) as the checkpoint's data, for BN recalibration and accuracy datasets.
"""

from __future__ import annotations

from types import SimpleNamespace

import hydra
from omegaconf import DictConfig

from supernets.pretrained import OFA_FILES, convert_ofa_checkpoint


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="convert_ofa_checkpoint")
def main(cfg: DictConfig) -> dict:
    from supernets.config_checks import ConfigError, check_int

    if cfg.supernet is not None and cfg.supernet not in OFA_FILES:
        raise ConfigError(f"supernet={cfg.supernet!r} has no published OFA file; choose one of {sorted(OFA_FILES)} "
                          f"or null (the one the file fits)")
    args = SimpleNamespace(src=str(cfg.src), dst=str(cfg.dst), supernet=cfg.supernet, data_root=cfg.data_root,
                           image_size=check_int("image_size", cfg.image_size, min=1))
    data = ({"name": "imagefolder", "root": args.data_root, "image_size": args.image_size, "batch_size": 32}
            if args.data_root else None)
    meta = convert_ofa_checkpoint(args.src, args.dst, supernet=args.supernet, data=data)
    print(f"wrote {args.dst}: supernet {meta['supernet']} from {args.src}"
          + (f", data {args.data_root}" if data else "; pass data.root=<image folder> to search.py to recalibrate BN"))
    return meta


if __name__ == "__main__":
    main()
