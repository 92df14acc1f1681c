"""Reconciling account files with live Gorgias: desired state, observation, plan, render, apply."""
