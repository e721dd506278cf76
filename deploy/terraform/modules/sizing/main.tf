# Provider-free logic of the GKE module: resource names and the GPU machine for an accelerator and count.
# Tested offline with `terraform test` (tests/sizing.tftest.hcl): no provider download needed.
terraform {
  required_version = ">= 1.6"
}

variable "project_id" {
  description = "GCP project id."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "gpu_type" {
  description = "GKE accelerator type of the GPU pool."
  type        = string
}

variable "gpus_per_node" {
  description = "GPUs per GPU node; vLLM's tensor-parallel size in one pod."
  type        = number
}

locals {
  # The machine family each accelerator is attached to, and the machines by GPU count (GCE's fixed shapes).
  machines = {
    "nvidia-l4"         = { 1 = "g2-standard-8", 2 = "g2-standard-24", 4 = "g2-standard-48", 8 = "g2-standard-96" }
    "nvidia-tesla-t4"   = { 1 = "n1-standard-8", 2 = "n1-standard-16", 4 = "n1-standard-32" }
    "nvidia-tesla-a100" = { 1 = "a2-highgpu-1g", 2 = "a2-highgpu-2g", 4 = "a2-highgpu-4g", 8 = "a2-highgpu-8g" }
    "nvidia-a100-80gb"  = { 1 = "a2-ultragpu-1g", 2 = "a2-ultragpu-2g", 4 = "a2-ultragpu-4g", 8 = "a2-ultragpu-8g" }
    "nvidia-h100-80gb"  = { 1 = "a3-highgpu-1g", 2 = "a3-highgpu-2g", 4 = "a3-highgpu-4g", 8 = "a3-highgpu-8g" }
  }
  # Bucket names are global: the project id makes them unique; at most 63 characters, lower case.
  bucket = substr(lower("${var.project_id}-${var.name}-workspace"), 0, 63)
}

output "gpu_machine_type" {
  description = "The GCE machine type that carries gpus_per_node GPUs of gpu_type."
  value       = lookup(lookup(local.machines, var.gpu_type, {}), tostring(var.gpus_per_node), null)
}

output "supported" {
  description = "Accelerator types and GPU counts this module can size."
  value       = { for t, m in local.machines : t => sort([for n in keys(m) : tonumber(n)]) }
}

output "names" {
  description = "Names of the cluster, node pools, bucket, registry repository and node service account."
  value = {
    cluster    = var.name
    cpu_pool   = "${var.name}-cpu"
    gpu_pool   = "${var.name}-gpu"
    bucket     = local.bucket
    repository = var.name
    node_sa    = substr("${var.name}-nodes", 0, 30)
  }
}
