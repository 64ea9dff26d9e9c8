//! Depth Anything V1/V2 on LibTorch.
