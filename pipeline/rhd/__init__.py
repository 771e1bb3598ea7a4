"""RHD analysis: Doppler colour segmentation, echo view CNN, GLCM textures, the RHD grade."""
