"""Applications built on the library: demo, ShapesVQA evaluation, benchmarks. The library never imports them."""
