"""Vision transformers on the bundled digits: the data, a trainer run, the pictures' numbers.

The model is the ordinary `gptscope.Transformer` with a vision config (``image_shape``,
``patch_size``; see `gptscope.model.vision`). This layer sits above ``train/``: it hands
the trainer a data object that knows images and labels (`DigitImages`).
"""

from gptscope.vision.digits import (
    DigitImages,
    digits_split,
    train_vit_digits,
    vit_digits_config,
    vit_digits_train_config,
)

__all__ = ["DigitImages", "digits_split", "train_vit_digits", "vit_digits_config",
           "vit_digits_train_config"]
