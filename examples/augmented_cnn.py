"""A user objective trained from a ``DataLoader`` with random augmentation: a small CNN on
scikit-learn's bundled 8x8 digits (no download), each training image shifted by up to a pixel
and given a little noise, drawn afresh every epoch; scored on a validation split after every
epoch and on a test split at the end of each complete trial::

    python -m sweeps.run --objective examples.augmented_cnn:objective \\
        --metric val_accuracy --direction maximize
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from objectives.dataset import DatasetObjective, accuracy
from objectives.digits import load_splits

__all__ = ["ShiftedDigits", "SmallCNN", "objective"]


class ShiftedDigits(Dataset):
    """1x8x8 images and their digits; with ``augment``, each image read is moved by up to
    ``shift`` pixels each way (zeros fill in) and given Gaussian noise of scale ``noise``,
    drawn from torch's global generator (the objective seeds it per epoch)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: bool = False,
                 shift: int = 1, noise: float = 0.1) -> None:
        self.images, self.labels = images, labels
        self.augment, self.shift, self.noise = augment, shift, noise

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.augment:
            side = image.shape[-1]
            padded = nn.functional.pad(image, [self.shift] * 4)
            top, left = torch.randint(0, 2 * self.shift + 1, (2,)).tolist()
            image = padded[:, top:top + side, left:left + side]
            image = image + self.noise * torch.randn_like(image)
        return image, self.labels[index]


class SmallCNN(nn.Module):
    """conv-BatchNorm-ReLU twice, 2x2 max-pool, dropout, linear: ten class scores."""

    def __init__(self, channels: int = 8, dropout: float = 0.2) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels),
            nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(dropout), nn.Flatten(),
            nn.Linear(2 * channels * 4 * 4, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


splits = load_splits(seed=0, shape=(1, 8, 8))  # stratified train / validation / test
with torch.random.fork_rng(devices=[]):  # seed the layers' init without touching global state
    torch.manual_seed(0)
    model = SmallCNN()

objective = DatasetObjective(
    model,
    DataLoader(ShiftedDigits(*splits.train, augment=True), batch_size=64, shuffle=True),
    loss_fn=nn.functional.cross_entropy,
    validation=ShiftedDigits(*splits.validation),  # not augmented, scored in eval mode
    test=ShiftedDigits(*splits.test),  # scored once at the end of each complete trial
    batch_size=256,  # the held-out Datasets' batches (the DataLoader keeps its 64)
    metrics={"accuracy": accuracy},  # val_accuracy, test_accuracy
    name=f"{__name__}:objective",  # the import path the sweep was given
    default_epochs=15,
)
