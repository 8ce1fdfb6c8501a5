"""The zoo survey: every model of the torchvision and timm zoos through the pipeline."""
