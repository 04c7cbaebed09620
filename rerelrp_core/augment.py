"""Training-time augmentation: the paper's for 32-pixel colour sets (pad 4, random resized crop
back to 32, horizontal flip), with torchvision's transforms, drawn per batch from a seed the
training shuffle provides, so a run stays reproducible and two trainings never share a generator."""
import torch
from torchvision.transforms import v2

from .seeding import seeded

AUGMENTED = ("cifar10", "cifar100", "svhn")     # "auto" turns it on for these


def augmentation(choice, dataset_name, input_shape):
    """A function (batch, seed) -> augmented batch, or None: ``choice`` is ``none``, ``crop-flip`` or
    ``auto`` (crop-flip for the 32-pixel colour sets of the paper)."""
    if choice == "none" or (choice == "auto" and dataset_name not in AUGMENTED):
        return None
    transform = v2.Compose([v2.Pad(4), v2.RandomResizedCrop(input_shape[-1], antialias=True),
                            v2.RandomHorizontalFlip()])

    def apply(batch, seed):
        with seeded(seed):      # one image at a time: each gets its own crop and flip
            return torch.stack([transform(image) for image in batch])
    return apply
