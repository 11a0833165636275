"""BSN's proposal generation module (PGM) over a data set, as MMAction2's
tools/misc/bsn_proposal_generation.py.

    python -m action_jax.tools.bsn_proposal_generation configs/bsn_pem_anet.py --mode train

Reads from the config file's module-level settings: tem_results_dir, pgm_proposals_dir,
pgm_features_dir, pgm_proposals_cfg, pgm_features_{train,test}_cfg and ann_file_{train,val}
(`--mode train` uses the train split and pgm_features_train_cfg, `test` the val split).
"""
from __future__ import annotations

import argparse
import importlib.util
import time

from action_jax.localization.postprocess import generate_pgm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file with the PGM settings')
    parser.add_argument('--mode', choices=['train', 'test'], default='test')
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location('pgm_config', args.config)
    cfg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cfg)
    ann_file = cfg.ann_file_train if args.mode == 'train' else cfg.ann_file_val
    features_cfg = cfg.pgm_features_train_cfg if args.mode == 'train' else cfg.pgm_features_test_cfg
    start = time.perf_counter()
    count = generate_pgm(ann_file, cfg.tem_results_dir, cfg.pgm_proposals_dir,
                         cfg.pgm_features_dir, cfg.pgm_proposals_cfg, features_cfg)
    print(f'PGM ({args.mode}): proposals and BSP features of {count} videos written to '
          f'{cfg.pgm_proposals_dir} and {cfg.pgm_features_dir} in '
          f'{time.perf_counter() - start:.1f} s')
    return count


if __name__ == '__main__':
    main()
