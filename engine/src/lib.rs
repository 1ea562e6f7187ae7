//! `mesh-engine`: the Docker engine behind a narrow type. It runs a task as a container
//! (`network_mode: none`, labelled `meshd.task`), finds its network namespace, streams its logs,
//! watches it end, stops and removes it. It alone touches bollard.
