"""Tools around the pipeline that are not stages, so the bundle shipped to Spark executors
leaves them out: the sample-data generator, the run summary, the bundler, the demo's example
calls, and the processes (redis-server, the API under its production server) that tests and benchmarks start."""
