#!/usr/bin/env bash
# Fetch the natural photographs the default image prior is trained on, from Debian's
# wallpaper packages, WITHOUT installing anything: `apt-get download` the .deb files
# into a temporary directory, unpack them there with `dpkg-deb -x`, and copy only the
# photographs (selected by hand; the packages also hold illustrations) into
# data/photos/ (or $1), de-duplicated by content hash. Images are never committed.
#
#   plasma-workspace-wallpapers  11 photos (their 2560x1600 variants)
#   mate-backgrounds             12 photos (nature/)
#   lomiri-wallpapers-16.04      14 photos
#   lomiri-wallpapers-20.04       1 photo
# Not used: Plasma's Autumn, Elarun, FlyingKonqui and the other illustrations,
# lomiri's umang/Fossa/Infinite-Sea/Painting-Colors, gnome/ukui/sway backgrounds.
set -euo pipefail

DEST="${1:-data/photos}"
PACKAGES=(plasma-workspace-wallpapers mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04)

PLASMA=(BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey Kite
        OneStandsOut Path summer_1am)
MATE=(Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings
      Wood YellowFlower)
LOMIRI=(Bridge_by_Sander_Klootwijk Dragonfly_by_Bolly Picture_0B_by_freespace
        Picture_1A_by_freespace Wine_by_Jakkub_Mede aitzgorri_by_Aitzol_Berasategi
        analogpattern_by_Peter_Nerlich free_by_Peter_Nerlich friends_by_Aitzol_Berasategi
        greentock_by_Peter_Nerlich life_by_Aitzol_Berasategi
        picosdeeuropa_by_Aitzol_Berasategi seeding_by_Clements_Engelhardt
        sunset_by_Aitzol_Berasategi Kleiber_by_Lukas_Baubkus)

for tool in apt-get dpkg-deb sha256sum; do
    command -v "$tool" >/dev/null || { echo "get_photos: needs $tool (a Debian/Ubuntu system)" >&2; exit 1; }
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$DEST"

echo "get_photos: downloading ${PACKAGES[*]} (about 150 MB) into $TMP"
if ! (cd "$TMP" && apt-get download "${PACKAGES[@]}" >/dev/null 2>&1); then
    echo "get_photos: package lists missing or stale; running apt-get update"
    apt-get update >/dev/null || { echo "get_photos: apt-get update failed (needs root or network)" >&2; exit 1; }
    (cd "$TMP" && apt-get download "${PACKAGES[@]}") || {
        echo "get_photos: apt-get download failed" >&2; exit 1; }
fi
for deb in "$TMP"/*.deb; do dpkg-deb -x "$deb" "$TMP/root"; done

SRC=()
for n in "${PLASMA[@]}"; do SRC+=("$TMP/root/usr/share/wallpapers/$n/contents/images/2560x1600.jpg"); done
for n in "${MATE[@]}"; do SRC+=("$TMP/root/usr/share/backgrounds/mate/nature/$n.jpg"); done
for n in "${LOMIRI[@]}"; do SRC+=("$TMP/root/usr/share/backgrounds/$n.jpg"); done

declare -A SEEN=()
copied=0
for f in "${SRC[@]}"; do
    [ -f "$f" ] || { echo "get_photos: warning: $f not in the packages, skipped" >&2; continue; }
    h="$(sha256sum "$f" | cut -c1-64)"
    [ -z "${SEEN[$h]:-}" ] || { echo "get_photos: duplicate skipped: $(basename "$f")"; continue; }
    SEEN[$h]=1
    case "$f" in
        */wallpapers/*) name="plasma_$(basename "$(dirname "$(dirname "$(dirname "$f")")")").jpg" ;;
        */mate/nature/*) name="mate_$(basename "$f")" ;;
        *) name="lomiri_$(basename "$f")" ;;
    esac
    cp "$f" "$DEST/$name"
    copied=$((copied + 1))
done
echo "get_photos: $copied photographs in $DEST"
