"""Image and video metrics: PSNR, SSIM, LPIPS, sharpness difference, F-LMD, CLIP direction."""
