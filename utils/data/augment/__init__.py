"""Training-time augmentation: MRAugment (``mraugment``), its probability ``schedule``, and the
``transform`` that combines them with mask augmentation (:mod:`utils.data.mask_types`)."""
from utils.data.augment.schedule import AugmentSchedule
from utils.data.augment.transform import ImageAugment, MaskAugment, TrainingTransform

__all__ = ["AugmentSchedule", "ImageAugment", "MaskAugment", "TrainingTransform"]
