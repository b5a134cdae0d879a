# Miniature image and video worlds built on sklearn's bundled 8×8 digits: W2SD evidence on real images, CPU only.
