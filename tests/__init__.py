"""The test suite; sub-packages mirror the code: core, pipeline, tools, client, train."""
