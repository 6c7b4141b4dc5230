"""The backbone weights a detector can start from, each with the input normalisation it was trained with.

The normalisation belongs to the weights, not to the project: Caffe-trained VGG16 expects 0-255 pixels minus the
mean pixel, torchvision's ImageNet classifiers expect [0, 1] pixels standardised by ImageNet's mean and std. A run
takes the normalisation of the weights it loads (and ImageNet's when it trains from scratch), and its model file
records it for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneWeights:
    name: str
    url: str  # torch.hub checks the sha256 prefix in the file name
    loader: str  # "module:function" taking (model, state_dict, source, fc_state=None)
    normalization: str  # a key of scbloss.data.transforms.NORMALIZATIONS
    summary: str
    # Caffe's reduced fc6/fc7 published for these conv weights, loaded unless the run's fc_weights says otherwise
    fc_url: str | None = None


XAVIER = "xavier"  # fc_weights: leave fc6/fc7 at their Xavier initialisation


BACKBONE_WEIGHTS = {
    weights.name: weights
    for weights in (
        BackboneWeights(
            "vgg16_caffe",
            "https://download.pytorch.org/models/vgg16_features-amdegroot-88682ab5.pth",
            "scbloss.models.pretrained:load_vgg16",
            "caffe",
            "the Caffe-trained VGG16 of the SSD family, as torchvision's VGG16_Weights.IMAGENET1K_FEATURES (the "
            "port behind ssd.pytorch): valid conv layers, NaN classifier; fc6/fc7 from Caffe's reduced fc layers "
            "(VGG_ILSVRC_16_layers_fc_reduced) as ssd.pytorch publishes them, as every SSD-family script starts",
            # ssd.pytorch README ("fc-reduced VGG-16 PyTorch base network weights") and train.py (--basenet
            # vgg16_reducedfc.pth); published without a checksum: the loader checks its keys and shapes
            fc_url="https://s3.amazonaws.com/amdegroot-models/vgg16_reducedfc.pth",
        ),
        BackboneWeights(
            "vgg16_caffe_mmcv",
            # mmcv's open-mmlab://vgg16_caffe (mmcv/runner/urls.py names the same file on an older host), which the
            # paper's released code starts SSD from (SCB_Loss configs/pascal_voc/ssd300_voc.py L5)
            "https://download.openmmlab.com/pretrain/third_party/vgg16_caffe-292e1171.pth",
            "scbloss.models.pretrained:load_vgg16_mmcv",
            "mmdet_caffe",
            "mmcv's Caffe VGG16 (open-mmlab://vgg16_caffe) in mmdetection's SSDVGG layout: conv1_1-conv5_3 and "
            "Caffe's reduced fc6/fc7 (features.31, features.33), as the paper's released code loads it",
        ),
        BackboneWeights(
            "vgg16_imagenet1k_v1",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            "scbloss.models.pretrained:load_vgg16",
            "imagenet",
            "torchvision's ImageNet VGG16 classifier (IMAGENET1K_V1); fc6/fc7 decimated from its fc6/fc7 as in SSD",
        ),
        BackboneWeights(
            "resnet101_imagenet1k_v1",
            "https://download.pytorch.org/models/resnet101-63fe2227.pth",
            "scbloss.models.pretrained:load_resnet101",
            "imagenet",
            "torchvision's ImageNet ResNet-101 (IMAGENET1K_V1), the classifier dropped",
        ),
    )
}


def backbone_weights(name: str) -> BackboneWeights:
    try:
        return BACKBONE_WEIGHTS[name]
    except KeyError:
        raise ValueError(f"unknown backbone weights {name!r}; choose one of {', '.join(BACKBONE_WEIGHTS)}") from None


__all__ = ["BACKBONE_WEIGHTS", "XAVIER", "BackboneWeights", "backbone_weights"]
