variable "project_id" {
  description = "GCP project id (no default: nothing here is tied to one project)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id: 6-30 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the bucket and the Artifact Registry repository."
  type        = string
  default     = "us-central1"
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region: a GCP region such as us-central1."
  }
}

variable "zone" {
  description = "Zone of the (zonal) cluster: pick one where gpu_type is offered."
  type        = string
  default     = "us-central1-a"
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]-[a-z]$", var.zone))
    error_message = "zone: a GCP zone such as us-central1-a."
  }
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "flexrl"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name: 3-21 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "cpu_machine_type" {
  description = "Machine type of the CPU pool (training, sweeps, TensorBoard, MLflow)."
  type        = string
  default     = "e2-standard-8"
}

variable "cpu_max_nodes" {
  description = "Autoscaling maximum of the CPU pool."
  type        = number
  default     = 4
  validation {
    condition     = var.cpu_max_nodes >= 1 && var.cpu_max_nodes <= 100
    error_message = "cpu_max_nodes: 1 to 100."
  }
}

variable "gpu_type" {
  description = "GKE accelerator type of the GPU pool."
  type        = string
  default     = "nvidia-l4"
  validation {
    condition     = contains(["nvidia-l4", "nvidia-tesla-t4", "nvidia-tesla-a100", "nvidia-a100-80gb", "nvidia-h100-80gb"], var.gpu_type)
    error_message = "gpu_type: one of nvidia-l4, nvidia-tesla-t4, nvidia-tesla-a100, nvidia-a100-80gb, nvidia-h100-80gb."
  }
}

variable "gpus_per_node" {
  description = "GPUs per GPU node = vLLM's tensor-parallel size (flexrl k8s submit serve --gpus)."
  type        = number
  default     = 2
  validation {
    condition     = contains([1, 2, 4, 8], var.gpus_per_node)
    error_message = "gpus_per_node: 1, 2, 4 or 8."
  }
}

variable "gpu_max_nodes" {
  description = "Autoscaling maximum of the GPU pool (its minimum is 0: no GPU is paid for while idle)."
  type        = number
  default     = 2
  validation {
    condition     = var.gpu_max_nodes >= 0 && var.gpu_max_nodes <= 16
    error_message = "gpu_max_nodes: 0 to 16."
  }
}

variable "spot" {
  description = "Spot VMs for the GPU pool (cheaper, may be preempted: serving restarts, Jobs retry)."
  type        = bool
  default     = true
}

variable "namespace" {
  description = "Kubernetes namespace of the workloads (deploy/k8s)."
  type        = string
  default     = "flexrl"
}

variable "service_account" {
  description = "Kubernetes ServiceAccount of the pods, granted the workspace bucket through Workload Identity."
  type        = string
  default     = "flexrl"
}

variable "deletion_protection" {
  description = "Refuse `terraform destroy` of the cluster (set false before `make gke-down`)."
  type        = bool
  default     = false
}
