# Benchmarks: measured cost of W2SD on tiny pipelines (not timed tests; results stored under results/).
