# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A Kubernetes API server emulator with controllers, for testing the collection's Kubernetes platform here.

Test infrastructure only (not shipped): see README.md in this folder for what it emulates and what it does not.
"""
