"""Benchmarks: metrics (ST-IoU, PSNR, SSIM, FVD), per-skill ST-IoU, offline policy evaluation, speed."""
