# terraform test (offline: this module uses no provider).
variables {
  project_id    = "my-project-123"
  name          = "flexrl"
  gpu_type      = "nvidia-l4"
  gpus_per_node = 2
}

run "l4_pair" {
  command = plan
  assert {
    condition     = output.gpu_machine_type == "g2-standard-24"
    error_message = "2 x L4 should be a g2-standard-24"
  }
  assert {
    condition     = output.names.bucket == "my-project-123-flexrl-workspace"
    error_message = "the bucket name carries the project id"
  }
}

run "h100_node" {
  command = plan
  variables {
    gpu_type      = "nvidia-h100-80gb"
    gpus_per_node = 8
  }
  assert {
    condition     = output.gpu_machine_type == "a3-highgpu-8g"
    error_message = "8 x H100 should be an a3-highgpu-8g"
  }
}

run "unsupported_count_has_no_machine" {
  command = plan
  variables {
    gpu_type      = "nvidia-tesla-t4"
    gpus_per_node = 8
  }
  assert {
    condition     = output.gpu_machine_type == null
    error_message = "T4 machines carry at most 4 GPUs"
  }
}

run "long_names_fit_the_limits" {
  command = plan
  variables {
    project_id = "a-very-long-project-identifier-x"
    name       = "flexrl-experiments-long-cluster-name"
  }
  assert {
    condition     = length(output.names.bucket) <= 63 && length(output.names.node_sa) <= 30
    error_message = "bucket names are at most 63 characters, service account ids at most 30"
  }
}
