"""MRI maths shared by the data simulator, the model and the metrics.

One home per idea: centred orthonormal FFTs (`fft`), complex and coil arithmetic (`coils`), the centre
crop to the 384x384 challenge grid (`crop`), the auto-calibration lines of a mask (`acs`) and the GRAPPA
behind the simulator's image_grappa (`grappa`).
"""
