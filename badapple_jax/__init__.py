"""badapple-jax: one attention head of a frozen GPT-2 displays a video."""
