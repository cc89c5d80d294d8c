# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A local stand-in for the AWX API v2 (server.py) and AWX's own validation rules (rules.py), for tests."""
