"""PromptMR+ (Xin, Ye, Axel, Metaxas, ECCV 2024), as the 2025 SNU challenge winner ran it; read top-down:

- ``attention``: channel attention, the CAB, the shared-PReLU reference;
- ``prompt``: the prompt block (a softmax mix of fixed prompt components);
- ``history``: the decoder-feature history one cascade hands the next (order, tiling, dropping the oldest);
- ``levels``: the U-Net's encoder and decoder levels;
- ``prompt_unet``: the three-level prompt U-Net and its sizes;
- ``norm_prompt_unet``: that U-Net on complex channels (one mean and std per sample, padding to 8);
- ``sensitivity``: fixed 8 % ACS columns, a per-coil prompt U-Net, RSS = 1;
- ``cascade``: one cascade (A^H A x, the adaptive-input buffer, soft data consistency);
- ``crop``: the entry's crop / zero-pad offsets to 384 x 384;
- ``promptmr_plus``: the whole network, ``PromptMRPlus``;
- ``config``: the builder's checks of a PromptMR+ model config;
- ``reference_keys``: the entry's state dict -> this package's config and key names (the importer's core).
"""
from utils.model.promptmr.promptmr_plus import PromptMRPlus

__all__ = ["PromptMRPlus"]
