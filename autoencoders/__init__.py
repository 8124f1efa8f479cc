"""Train autoencoders with pixel and perceptual losses; export reconstructions and codes."""
