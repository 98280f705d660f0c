//! The training data set file: 32×32 RGB images with class labels and a fixed
//! train/held-out split, stored as safetensors (`images` u8 `[N, H, W, 3]`, `labels` u8
//! `[N]`, `split` u8 `[N]`, 0 = train, 1 = held-out) with class names, attribution, image
//! names and, optionally, each image's subclass in `__metadata__["nextscale.dataset"]`.

use std::collections::HashMap;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::config::Subclass;
use crate::error::{Error, Result};

/// Metadata key holding the [`DatasetInfo`] JSON.
pub const DATASET_METADATA_KEY: &str = "nextscale.dataset";

/// Which part of the fixed split an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Used to train the generator and the evaluator.
    Train,
    /// Never trained on; measures generalisation.
    HeldOut,
}

/// Everything about a data set besides its pixels.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetInfo {
    /// Class names, indexed by label.
    pub class_names: Vec<String>,
    /// License and attribution of the images.
    pub attribution: String,
    /// A name per image (e.g. the emoji short name).
    pub names: Vec<String>,
    /// Names of the subclasses, finer parts of the classes (e.g. the emoji subcategories);
    /// empty when the set has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subclass_names: Vec<String>,
    /// The subclass of each image, an index into `subclass_names`; empty when the set has
    /// none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subclasses: Vec<usize>,
}

/// Images, labels and split of a data set, in host memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Metadata.
    pub info: DatasetInfo,
    /// Side of the square images.
    pub size: usize,
    /// RGB bytes, `[N, size, size, 3]`.
    pub pixels: Vec<u8>,
    /// Label per image.
    pub labels: Vec<usize>,
    /// Split per image.
    pub split: Vec<Split>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.info.class_names.len()
    }

    /// The same images with a class per (style, class) pair, and the number of styles. An
    /// image's style is its name's prefix up to `:` (`twitter:` in a `nextscale data
    /// --twitter` set). Unprefixed images are the first style and keep their labels; style
    /// `s`, counted in order of first appearance, takes labels `s · classes + label` and
    /// class names `"name (style)"`.
    pub fn by_style(&self) -> (Self, usize) {
        let classes = self.num_classes();
        let mut styles = vec![""];
        let mut out = self.clone();
        for (label, name) in out.labels.iter_mut().zip(&self.info.names) {
            let style = name.split_once(':').map_or("", |(prefix, _)| prefix);
            let s = styles
                .iter()
                .position(|&known| known == style)
                .unwrap_or_else(|| {
                    styles.push(style);
                    styles.len() - 1
                });
            *label += s * classes;
        }
        out.info.class_names = styles
            .iter()
            .flat_map(|style| {
                self.info.class_names.iter().map(move |name| match *style {
                    "" => name.clone(),
                    style => format!("{name} ({style})"),
                })
            })
            .collect();
        (out, styles.len())
    }

    /// The same images labelled by subclass (class names become the subclass names), and
    /// the subclasses with their class and their share of its training images. Fails if
    /// the set has no subclasses.
    pub fn by_subclass(&self) -> Result<(Self, Vec<Subclass>)> {
        if self.info.subclass_names.is_empty() {
            return Err(Error::BadRequest(
                "the data set has no subclasses (make it again with `nextscale data`)".into(),
            ));
        }
        let mut class_of = vec![None; self.info.subclass_names.len()];
        let mut train = vec![0usize; self.info.subclass_names.len()];
        let mut class_train = vec![0usize; self.num_classes()];
        for (i, (&sub, &class)) in self.info.subclasses.iter().zip(&self.labels).enumerate() {
            if *class_of[sub].get_or_insert(class) != class {
                return Err(Error::Config(format!(
                    "subclass `{}` holds images of two classes",
                    self.info.subclass_names[sub]
                )));
            }
            if self.split[i] == Split::Train {
                train[sub] += 1;
                class_train[class] += 1;
            }
        }
        let subclasses = self
            .info
            .subclass_names
            .iter()
            .zip(class_of)
            .zip(train)
            .map(|((name, class), n)| {
                let class = class
                    .ok_or_else(|| Error::Config(format!("subclass `{name}` has no image")))?;
                Ok(Subclass {
                    name: name.clone(),
                    class,
                    share: n as f64 / class_train[class].max(1) as f64,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = self.clone();
        out.labels = self.info.subclasses.clone();
        out.info.class_names = self.info.subclass_names.clone();
        Ok((out, subclasses))
    }

    /// Indices of the images in a split.
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.split[i] == split)
            .collect()
    }

    /// Serialises the set as a data set file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let n = self.len();
        let labels: Vec<u8> = self.labels.iter().map(|&l| l as u8).collect();
        let split: Vec<u8> = self
            .split
            .iter()
            .map(|&s| (s == Split::HeldOut) as u8)
            .collect();
        let s = self.size;
        let views = vec![
            (
                "images",
                TensorView::new(Dtype::U8, vec![n, s, s, 3], &self.pixels),
            ),
            ("labels", TensorView::new(Dtype::U8, vec![n], &labels)),
            ("split", TensorView::new(Dtype::U8, vec![n], &split)),
        ];
        let views = views
            .into_iter()
            .map(|(k, v)| {
                v.map(|v| (k, v))
                    .map_err(|e| Error::BadHeader(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let json = serde_json::to_string(&self.info).map_err(|e| Error::Config(e.to_string()))?;
        let metadata = HashMap::from([(DATASET_METADATA_KEY.to_string(), json)]);
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::BadHeader(e.to_string()))
    }

    /// Parses a data set file, checking every shape and label.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (_, meta) =
            SafeTensors::read_metadata(bytes).map_err(|e| Error::BadHeader(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::BadHeader(e.to_string()))?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(DATASET_METADATA_KEY))
            .ok_or_else(|| {
                Error::Config(format!(
                    "no `{DATASET_METADATA_KEY}` metadata: not a data set file"
                ))
            })?;
        let info: DatasetInfo = serde_json::from_str(json)
            .map_err(|e| Error::Config(format!("data set metadata: {e}")))?;
        let get = |name: &str| {
            let t = st
                .tensor(name)
                .map_err(|_| Error::MissingTensor(name.to_string()))?;
            if t.dtype() != Dtype::U8 {
                return Err(Error::DType {
                    name: name.to_string(),
                    actual: format!("{:?}", t.dtype()),
                    expected: "U8",
                });
            }
            Ok((t.shape().to_vec(), t.data().to_vec()))
        };
        let (img_shape, pixels) = get("images")?;
        let (lab_shape, labels) = get("labels")?;
        let (split_shape, split) = get("split")?;
        let n = lab_shape.first().copied().unwrap_or(0);
        let ok = img_shape.len() == 4
            && img_shape[0] == n
            && img_shape[1] == img_shape[2]
            && img_shape[3] == 3
            && split_shape == lab_shape
            && info.names.len() == n;
        if !ok {
            return Err(Error::Config(format!(
                "inconsistent data set shapes: images {img_shape:?}, labels {lab_shape:?}, split {split_shape:?}, {} names",
                info.names.len()
            )));
        }
        let subclasses_fit = if info.subclass_names.is_empty() {
            info.subclasses.is_empty()
        } else {
            info.subclasses.len() == n
                && info
                    .subclasses
                    .iter()
                    .all(|&s| s < info.subclass_names.len())
        };
        if !subclasses_fit {
            return Err(Error::Config(format!(
                "{} subclass entries for {n} images and {} subclasses",
                info.subclasses.len(),
                info.subclass_names.len()
            )));
        }
        if let Some(&bad) = labels
            .iter()
            .find(|&&l| l as usize >= info.class_names.len())
        {
            return Err(Error::Config(format!(
                "label {bad} out of range for {} classes",
                info.class_names.len()
            )));
        }
        Ok(Self {
            size: img_shape[1],
            pixels,
            labels: labels.into_iter().map(usize::from).collect(),
            split: split
                .into_iter()
                .map(|s| if s == 0 { Split::Train } else { Split::HeldOut })
                .collect(),
            info,
        })
    }

    /// Images as a `[B, 3, H, W]` tensor in [-1, 1].
    pub fn images(&self, idx: &[usize], device: &Device) -> Tensor<4> {
        self.images_augmented(idx, &vec![Augment::default(); idx.len()], device)
    }

    /// Images each mirrored and translated as its [`Augment`] says, the uncovered border
    /// white, as a `[B, 3, H, W]` tensor in [-1, 1] (the evaluator's augmentation).
    pub fn images_augmented(
        &self,
        idx: &[usize],
        augments: &[Augment],
        device: &Device,
    ) -> Tensor<4> {
        let s = self.size as i32;
        let per = (s * s * 3) as usize;
        let mut values = Vec::with_capacity(idx.len() * per);
        for (&i, augment) in idx.iter().zip(augments) {
            let img = &self.pixels[i * per..(i + 1) * per];
            let (dx, dy) = augment.shift;
            for y in 0..s {
                for x in 0..s {
                    let sx = x - dx;
                    let sx = if augment.flip { s - 1 - sx } else { sx };
                    let sy = y - dy;
                    for c in 0..3 {
                        let p = if (0..s).contains(&sx) && (0..s).contains(&sy) {
                            img[((sy * s + sx) * 3 + c) as usize]
                        } else {
                            255
                        };
                        values.push(p as f32 / 127.5 - 1.0);
                    }
                }
            }
        }
        let s = self.size;
        Tensor::<4>::from_data(TensorData::new(values, [idx.len(), s, s, 3]), device)
            .permute([0, 3, 1, 2])
    }

    /// Labels as a `[B]` tensor.
    pub fn label_tensor(&self, idx: &[usize], device: &Device) -> Tensor<1, Int> {
        let labels: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        Tensor::from_data(TensorData::new(labels, [idx.len()]), device)
    }
}

/// How one training image is altered: mirrored left to right (first), then translated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Augment {
    /// Translation `(dx, dy)` in pixels.
    pub shift: (i32, i32),
    /// Mirror left to right.
    pub flip: bool,
}

/// Draws batches with every class equally likely, then an image of that class uniformly.
#[derive(Debug, Clone)]
pub struct BalancedSampler {
    by_class: Vec<Vec<usize>>,
}

impl BalancedSampler {
    /// A sampler over `indices` of `data` (classes with no image are skipped).
    pub fn new(data: &Dataset, indices: &[usize]) -> Result<Self> {
        let mut by_class = vec![Vec::new(); data.num_classes()];
        for &i in indices {
            by_class[data.labels[i]].push(i);
        }
        by_class.retain(|c| !c.is_empty());
        if by_class.is_empty() {
            return Err(Error::BadRequest("no images to sample from".into()));
        }
        Ok(Self { by_class })
    }

    /// A batch of `n` image indices.
    pub fn batch(&self, n: usize, rng: &mut impl Rng) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let class = &self.by_class[rng.random_range(0..self.by_class.len())];
                class[rng.random_range(0..class.len())]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn tiny() -> Dataset {
        Dataset {
            info: DatasetInfo {
                class_names: vec!["a".into(), "b".into()],
                attribution: "test".into(),
                names: vec!["x".into(), "y".into(), "z".into()],
                subclass_names: Vec::new(),
                subclasses: Vec::new(),
            },
            size: 2,
            pixels: (0..36).map(|v| v as u8 * 7).collect(),
            labels: vec![0, 1, 1],
            split: vec![Split::Train, Split::Train, Split::HeldOut],
        }
    }

    /// Prefixed names form styles in order of first appearance, each with its own classes.
    #[test]
    fn by_style_gives_each_style_its_classes() {
        let mut data = tiny();
        data.info.names = vec!["twitter:x".into(), "y".into(), "other:z".into()];
        let (styled, styles) = data.by_style();
        assert_eq!(styles, 3);
        assert_eq!(styled.labels, [2, 1, 5]);
        assert_eq!(
            styled.info.class_names,
            [
                "a",
                "b",
                "a (twitter)",
                "b (twitter)",
                "a (other)",
                "b (other)"
            ]
        );
        assert_eq!((styled.pixels, styled.split), (data.pixels, data.split));
        let (same, styles) = tiny().by_style();
        assert_eq!(
            (same.labels, same.info, styles),
            (tiny().labels, tiny().info, 1)
        );
    }

    /// Subclass labels replace the class labels; each subclass takes its images' class and
    /// its share of that class's training images (a held-out image counts for nothing); the
    /// subclasses survive the file; a subclass across two classes, a set without subclasses
    /// and a subclass list of the wrong length are errors.
    #[test]
    fn by_subclass_relabels_and_shares_the_training_images() {
        let mut data = tiny();
        data.labels = vec![0, 1, 1, 1];
        data.split.push(Split::Train);
        data.pixels.extend(0..12);
        data.info.names.push("w".into());
        data.info.subclass_names = vec!["p".into(), "q".into(), "r".into()];
        data.info.subclasses = vec![0, 2, 1, 2];
        let data = Dataset::from_bytes(&data.to_bytes().unwrap()).unwrap();
        let (relabelled, subclasses) = data.by_subclass().unwrap();
        assert_eq!(relabelled.labels, [0, 2, 1, 2]);
        assert_eq!(relabelled.info.class_names, ["p", "q", "r"]);
        let summary: Vec<(&str, usize, f64)> = subclasses
            .iter()
            .map(|s| (s.name.as_str(), s.class, s.share))
            .collect();
        assert_eq!(summary, [("p", 0, 1.0), ("q", 1, 0.0), ("r", 1, 1.0)]);
        let mut mixed = data.clone();
        mixed.info.subclasses = vec![0, 0, 1, 2];
        assert!(matches!(mixed.by_subclass(), Err(Error::Config(m)) if m.contains("`p`")));
        assert!(matches!(tiny().by_subclass(), Err(Error::BadRequest(_))));
        let mut short = data;
        short.info.subclasses.pop();
        assert!(matches!(
            Dataset::from_bytes(&short.to_bytes().unwrap()),
            Err(Error::Config(m)) if m.contains("subclass")
        ));
    }

    #[test]
    fn round_trips_and_rejects_bad_labels() {
        let data = tiny();
        let back = Dataset::from_bytes(&data.to_bytes().unwrap()).unwrap();
        assert_eq!(back.pixels, data.pixels);
        assert_eq!(back.labels, data.labels);
        assert_eq!(back.split, data.split);
        assert_eq!(back.info, data.info);
        let mut bad = tiny();
        bad.labels[0] = 5;
        assert!(matches!(
            Dataset::from_bytes(&bad.to_bytes().unwrap()),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Dataset::from_bytes(b"nope"),
            Err(Error::BadHeader(_))
        ));
    }

    #[test]
    fn images_are_scaled_to_unit_range() {
        let data = tiny();
        let v = data
            .images(&[2], &Device::flex())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // Pixel (0,0) red of image 2 is byte 24·7 = 168.
        assert!((v[0] - (168.0 / 127.5 - 1.0)).abs() < 1e-6);
    }

    #[test]
    fn augments_shift_and_mirror_pixels_and_fill_white() {
        let data = tiny();
        let dev = Device::flex();
        let values = |augment: Augment| -> Vec<f32> {
            data.images_augmented(&[1], &[augment], &dev)
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        let byte = |x: usize, y: usize, c: usize| data.pixels[12 + (y * 2 + x) * 3 + c];
        let at = |v: &[f32], x: usize, y: usize, c: usize| v[c * 4 + y * 2 + x];
        let near = |a: f32, b: u8| (a - (b as f32 / 127.5 - 1.0)).abs() < 1e-6;
        assert_eq!(
            values(Augment::default()),
            data.images(&[1], &dev)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        );
        // Shift right by one: column 0 is white, column 1 holds the old column 0.
        let shifted = values(Augment {
            shift: (1, 0),
            flip: false,
        });
        assert_eq!(at(&shifted, 0, 0, 0), 1.0);
        assert!(near(at(&shifted, 1, 0, 0), byte(0, 0, 0)));
        // Mirrored: column 0 holds the old column 1 and column 1 the old column 0.
        let mirrored = values(Augment {
            shift: (0, 0),
            flip: true,
        });
        for (y, c) in [(0, 0), (1, 2)] {
            assert!(near(at(&mirrored, 0, y, c), byte(1, y, c)));
            assert!(near(at(&mirrored, 1, y, c), byte(0, y, c)));
        }
        // Mirrored, then shifted down by one: row 0 is white, row 1 the old row 0 mirrored.
        let both = values(Augment {
            shift: (0, 1),
            flip: true,
        });
        assert_eq!(at(&both, 1, 0, 1), 1.0);
        assert!(near(at(&both, 0, 1, 1), byte(1, 0, 1)));
    }

    #[test]
    fn balanced_sampler_draws_classes_equally() {
        let data = tiny();
        let sampler = BalancedSampler::new(&data, &data.indices(Split::Train)).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let batch = sampler.batch(4000, &mut rng);
        let zeros = batch.iter().filter(|&&i| data.labels[i] == 0).count();
        assert!((1800..2200).contains(&zeros), "{zeros}");
        assert!(batch.iter().all(|&i| i != 2));
    }
}
